"""initial schema: devices, sessions, pending, anomalies, cards, downlinks, list_entries, tariff_sources

Revision ID: 0001
Revises: 
"""
from alembic import op
import sqlalchemy as sa


revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('anomalies',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('dev', sa.String(length=64), nullable=True),
    sa.Column('seq', sa.BigInteger(), nullable=True),
    sa.Column('kind', sa.String(length=24), nullable=False),
    sa.Column('detail', sa.Text(), nullable=False),
    sa.Column('topic', sa.String(length=255), nullable=False),
    sa.Column('raw', sa.Text(), nullable=False),
    sa.Column('hash', sa.String(length=64), nullable=True),
    sa.Column('slot', sa.Boolean(), nullable=False),
    sa.Column('received_at', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('anomalies', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_anomalies_dev'), ['dev'], unique=False)
        batch_op.create_index('ix_anomalies_slot', ['dev', 'seq'], unique=True, sqlite_where=sa.text('slot'), postgresql_where=sa.text('slot'))

    op.create_table('cards',
    sa.Column('token', sa.String(length=64), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('exp', sa.BigInteger(), nullable=True),
    sa.Column('contract', sa.String(length=64), nullable=True),
    sa.Column('balance', sa.BigInteger(), nullable=True),
    sa.Column('updated_at', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('token')
    )
    op.create_table('devices',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('pubkey', sa.LargeBinary(), nullable=False),
    sa.Column('added_at', sa.BigInteger(), nullable=False),
    sa.Column('head_seq', sa.BigInteger(), nullable=False),
    sa.Column('head_hash', sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('downlinks',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('dev', sa.String(length=32), nullable=False),
    sa.Column('type', sa.String(length=16), nullable=False),
    sa.Column('ver', sa.BigInteger(), nullable=False),
    sa.Column('part', sa.Integer(), nullable=False),
    sa.Column('parts', sa.Integer(), nullable=False),
    sa.Column('doc', sa.Text(), nullable=False),
    sa.Column('published_at', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('downlinks', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_downlinks_dev'), ['dev'], unique=False)

    op.create_table('list_entries',
    sa.Column('dev', sa.String(length=32), nullable=False),
    sa.Column('token', sa.String(length=64), nullable=False),
    sa.Column('entry', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('dev', 'token')
    )
    op.create_table('pending',
    sa.Column('dev', sa.String(length=32), nullable=False),
    sa.Column('seq', sa.BigInteger(), nullable=False),
    sa.Column('hash', sa.String(length=64), nullable=False),
    sa.Column('prev', sa.String(length=64), nullable=False),
    sa.Column('raw', sa.Text(), nullable=False),
    sa.Column('problem', sa.Text(), nullable=True),
    sa.Column('received_at', sa.BigInteger(), nullable=False),
    sa.Column('gap_reported', sa.Boolean(), nullable=False),
    sa.ForeignKeyConstraint(['dev'], ['devices.id'], ),
    sa.PrimaryKeyConstraint('dev', 'seq')
    )
    op.create_table('tariff_sources',
    sa.Column('dev', sa.String(length=32), nullable=False),
    sa.Column('contract', sa.String(length=64), nullable=False),
    sa.Column('ocpi', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('dev', 'contract')
    )
    op.create_table('sessions',
    sa.Column('dev', sa.String(length=32), nullable=False),
    sa.Column('seq', sa.BigInteger(), nullable=False),
    sa.Column('hash', sa.String(length=64), nullable=False),
    sa.Column('raw', sa.Text(), nullable=False),
    sa.Column('token', sa.String(length=64), nullable=False),
    sa.Column('auth', sa.String(length=16), nullable=False),
    sa.Column('contract', sa.String(length=64), nullable=True),
    sa.Column('tariff_id', sa.String(length=64), nullable=False),
    sa.Column('tariff_ver', sa.String(length=32), nullable=False),
    sa.Column('start_t', sa.BigInteger(), nullable=False),
    sa.Column('start_tq', sa.String(length=1), nullable=False),
    sa.Column('start_wh', sa.BigInteger(), nullable=False),
    sa.Column('stop_t', sa.BigInteger(), nullable=False),
    sa.Column('stop_tq', sa.String(length=1), nullable=False),
    sa.Column('stop_wh', sa.BigInteger(), nullable=False),
    sa.Column('stop_reason', sa.String(length=16), nullable=False),
    sa.Column('energy_wh', sa.BigInteger(), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('cost_excl', sa.BigInteger(), nullable=False),
    sa.Column('cost_incl', sa.BigInteger(), nullable=False),
    sa.Column('flags', sa.String(length=255), nullable=False),
    sa.Column('meter_model', sa.String(length=64), nullable=False),
    sa.Column('meter_serial', sa.String(length=64), nullable=False),
    sa.Column('fw', sa.String(length=32), nullable=False),
    sa.Column('ocmf', sa.Text(), nullable=False),
    sa.Column('payload', sa.Text(), nullable=False),
    sa.Column('charged', sa.BigInteger(), nullable=False),
    sa.Column('stored_at', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['dev'], ['devices.id'], ),
    sa.PrimaryKeyConstraint('dev', 'seq')
    )
    with op.batch_alter_table('sessions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_sessions_start_t'), ['start_t'], unique=False)
        batch_op.create_index(batch_op.f('ix_sessions_token'), ['token'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('sessions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_sessions_token'))
        batch_op.drop_index(batch_op.f('ix_sessions_start_t'))

    op.drop_table('sessions')
    op.drop_table('tariff_sources')
    op.drop_table('pending')
    op.drop_table('list_entries')
    with op.batch_alter_table('downlinks', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_downlinks_dev'))

    op.drop_table('downlinks')
    op.drop_table('devices')
    op.drop_table('cards')
    with op.batch_alter_table('anomalies', schema=None) as batch_op:
        batch_op.drop_index('ix_anomalies_slot', sqlite_where=sa.text('slot'), postgresql_where=sa.text('slot'))
        batch_op.drop_index(batch_op.f('ix_anomalies_dev'))

    op.drop_table('anomalies')
