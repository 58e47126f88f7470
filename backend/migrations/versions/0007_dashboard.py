"""operator dashboard (#22): accounts, login sessions, audit log; indexes for its queries

Revision ID: 0007
Revises: 0006
"""
from alembic import op
import sqlalchemy as sa


revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('web_users',
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('pw_hash', sa.String(length=255), nullable=False),
    sa.Column('role', sa.String(length=16), nullable=False),
    sa.Column('created_at', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('name')
    )
    op.create_table('web_logins',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('user', sa.String(length=64), nullable=False),
    sa.Column('csrf', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.BigInteger(), nullable=False),
    sa.Column('expires_at', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['user'], ['web_users.name']),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index(op.f('ix_web_logins_user'), 'web_logins', ['user'], unique=False)
    op.create_table('audit_log',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('at', sa.BigInteger(), nullable=False),
    sa.Column('user', sa.String(length=64), nullable=False),
    sa.Column('ip', sa.String(length=64), nullable=False),
    sa.Column('action', sa.String(length=32), nullable=False),
    sa.Column('target', sa.String(length=128), nullable=False),
    sa.Column('detail', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_audit_log_limit', 'audit_log', ['action', 'user', 'ip', 'at'], unique=False)
    # the dashboard's filters and aggregations (backend/web/queries.py)
    op.create_index('ix_sessions_dev_start', 'sessions', ['dev', 'start_t'], unique=False)
    op.create_index('ix_sessions_contract', 'sessions', ['contract'], unique=False)
    op.create_index('ix_sessions_token_start', 'sessions', ['token', 'start_t'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_sessions_token_start', table_name='sessions')
    op.drop_index('ix_sessions_contract', table_name='sessions')
    op.drop_index('ix_sessions_dev_start', table_name='sessions')
    op.drop_index('ix_audit_log_limit', table_name='audit_log')
    op.drop_table('audit_log')
    op.drop_index(op.f('ix_web_logins_user'), table_name='web_logins')
    op.drop_table('web_logins')
    op.drop_table('web_users')
