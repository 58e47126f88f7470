"""downlink convergence (#18): the versions each device reports holding

Revision ID: 0003
Revises: 0002
"""
from alembic import op
import sqlalchemy as sa


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('device_states',
    sa.Column('dev', sa.String(length=32), nullable=False),
    sa.Column('online', sa.Boolean(), nullable=False),
    sa.Column('tariff_ver', sa.BigInteger(), nullable=False),
    sa.Column('list_ver', sa.BigInteger(), nullable=False),
    sa.Column('collecting_ver', sa.BigInteger(), nullable=True),
    sa.Column('refused_ver', sa.BigInteger(), nullable=True),
    sa.Column('refused_reason', sa.String(length=32), nullable=True),
    sa.Column('seen_at', sa.BigInteger(), nullable=False),
    sa.Column('pushed_tariff_ver', sa.BigInteger(), nullable=False),
    sa.Column('pushed_tariff_at', sa.BigInteger(), nullable=False),
    sa.Column('pushed_list_ver', sa.BigInteger(), nullable=False),
    sa.Column('pushed_list_at', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('dev')
    )


def downgrade() -> None:
    op.drop_table('device_states')
