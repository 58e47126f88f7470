"""prepaid reservations and per-charger allowances (#18)

Revision ID: 0004
Revises: 0003
"""
from alembic import op
import sqlalchemy as sa


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('reservations',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('token', sa.String(length=64), nullable=False),
    sa.Column('dev', sa.String(length=32), nullable=False),
    sa.Column('amount', sa.BigInteger(), nullable=False),
    sa.Column('exp', sa.BigInteger(), nullable=False),
    sa.Column('created_at', sa.BigInteger(), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('seq', sa.BigInteger(), nullable=True),
    sa.Column('charged', sa.BigInteger(), nullable=True),
    sa.Column('closed_at', sa.BigInteger(), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_reservations_name', 'reservations', ['dev', 'token', 'exp'], unique=True)
    op.create_index('ix_reservations_token_state', 'reservations', ['token', 'state'], unique=False)
    op.create_table('allowances',
    sa.Column('dev', sa.String(length=32), nullable=False),
    sa.Column('token', sa.String(length=64), nullable=False),
    sa.Column('amount', sa.BigInteger(), nullable=False),
    sa.Column('bal_seq', sa.BigInteger(), nullable=False),
    sa.Column('updated_at', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('dev', 'token')
    )
    op.create_index(op.f('ix_allowances_token'), 'allowances', ['token'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_allowances_token'), table_name='allowances')
    op.drop_table('allowances')
    op.drop_index('ix_reservations_token_state', table_name='reservations')
    op.drop_index('ix_reservations_name', table_name='reservations')
    op.drop_table('reservations')
