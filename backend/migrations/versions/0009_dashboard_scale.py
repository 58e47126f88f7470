"""operator dashboard (#22), live state and scale: the last status as received, online changes, an
index for the revenue trend

Revision ID: 0009
Revises: 0008
"""
from alembic import op
import sqlalchemy as sa


revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # the chargers page's live state (state, power, energy and cost so far, firmware) from the
    # retained status, and the offline periods from its changes (backend/converge.py writes both)
    with op.batch_alter_table('device_states') as batch:
        batch.add_column(sa.Column('status', sa.Text(), nullable=True))
    op.create_table('device_presence',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('dev', sa.String(length=32), nullable=False),
    sa.Column('at', sa.BigInteger(), nullable=False),
    sa.Column('online', sa.Boolean(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_device_presence_dev_at', 'device_presence', ['dev', 'at'], unique=False)
    # the revenue trend at a million sessions: grouped by (currency, UTC day) in index order, covering
    op.create_index('ix_sessions_currency_day', 'sessions',
                    ['currency', sa.text('(start_t / 86400)'), 'start_t', 'energy_wh', 'cost_incl'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_sessions_currency_day', table_name='sessions')
    op.drop_index('ix_device_presence_dev_at', table_name='device_presence')
    op.drop_table('device_presence')
    with op.batch_alter_table('device_states') as batch:
        batch.drop_column('status')
