"""billing at scale (#20): invoices by contract, for the billing run's volume tiers

A billing run reads, per batch of documents, the energy already billed per contract and month
(backend/billing/runs.py, _billed_energy): invoices by contract_id, then their billed sessions
(ix_billed_sessions_invoice) and those sessions (primary key). Without this index each read
scanned every invoice. contract set reads the same way.

Revision ID: 0008
Revises: 0007
"""
from alembic import op


revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index('ix_invoices_contract', 'invoices', ['contract_id'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_invoices_contract', table_name='invoices')
