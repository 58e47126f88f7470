"""billing (#20): customers, contracts, invoices, credit notes

Revision ID: 0005
Revises: 0004
"""
from alembic import op
import sqlalchemy as sa


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('customers',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('address', sa.Text(), nullable=False),
    sa.Column('postcode', sa.String(length=16), nullable=False),
    sa.Column('city', sa.String(length=100), nullable=False),
    sa.Column('country', sa.String(length=2), nullable=False),
    sa.Column('vat_id', sa.String(length=32), nullable=True),
    sa.Column('email', sa.String(length=254), nullable=True),
    sa.Column('language', sa.String(length=2), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('created_at', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('contracts',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('customer_id', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['customer_id'], ['customers.id']),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index(op.f('ix_contracts_customer_id'), 'contracts', ['customer_id'], unique=False)
    op.create_table('contract_versions',
    sa.Column('contract_id', sa.String(length=64), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('valid_from', sa.BigInteger(), nullable=False),
    sa.Column('valid_to', sa.BigInteger(), nullable=True),
    sa.Column('tariff_id', sa.String(length=64), nullable=True),
    sa.Column('cycle', sa.String(length=16), nullable=False),
    sa.Column('payment_days', sa.Integer(), nullable=False),
    sa.Column('discounts', sa.Text(), nullable=False),
    sa.Column('late_fee', sa.BigInteger(), nullable=False),
    sa.Column('created_at', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['contract_id'], ['contracts.id']),
    sa.PrimaryKeyConstraint('contract_id', 'version')
    )
    op.create_table('card_owners',
    sa.Column('token', sa.String(length=64), nullable=False),
    sa.Column('valid_from', sa.BigInteger(), nullable=False),
    sa.Column('customer_id', sa.String(length=64), nullable=False),
    sa.Column('contract_id', sa.String(length=64), nullable=True),
    sa.Column('assigned_at', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['contract_id'], ['contracts.id']),
    sa.ForeignKeyConstraint(['customer_id'], ['customers.id']),
    sa.PrimaryKeyConstraint('token', 'valid_from')
    )
    op.create_index(op.f('ix_card_owners_customer_id'), 'card_owners', ['customer_id'], unique=False)
    op.create_table('number_series',
    sa.Column('series', sa.String(length=32), nullable=False),
    sa.Column('last', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('series')
    )
    op.create_table('invoices',
    sa.Column('number', sa.String(length=32), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('series', sa.String(length=32), nullable=False),
    sa.Column('seq', sa.BigInteger(), nullable=False),
    sa.Column('customer_id', sa.String(length=64), nullable=True),
    sa.Column('contract_id', sa.String(length=64), nullable=True),
    sa.Column('contract_ver', sa.Integer(), nullable=True),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('issued_at', sa.BigInteger(), nullable=False),
    sa.Column('period_start', sa.BigInteger(), nullable=True),
    sa.Column('period_end', sa.BigInteger(), nullable=True),
    sa.Column('due_at', sa.BigInteger(), nullable=True),
    sa.Column('billing_period', sa.String(length=7), nullable=False),
    sa.Column('refers_to', sa.String(length=32), nullable=True),
    sa.Column('buyer', sa.Text(), nullable=False),
    sa.Column('seller', sa.Text(), nullable=False),
    sa.Column('language', sa.String(length=2), nullable=False),
    sa.Column('total_net', sa.BigInteger(), nullable=False),
    sa.Column('total_tax', sa.BigInteger(), nullable=False),
    sa.Column('note', sa.Text(), nullable=False),
    sa.Column('payment_terms', sa.String(length=255), nullable=False),
    sa.Column('paid_at', sa.BigInteger(), nullable=True),
    sa.Column('late_fee_by', sa.String(length=32), nullable=True),
    sa.ForeignKeyConstraint(['customer_id'], ['customers.id']),
    sa.ForeignKeyConstraint(['refers_to'], ['invoices.number']),
    sa.PrimaryKeyConstraint('number')
    )
    op.create_index(op.f('ix_invoices_customer_id'), 'invoices', ['customer_id'], unique=False)
    op.create_index(op.f('ix_invoices_refers_to'), 'invoices', ['refers_to'], unique=False)
    op.create_index('ix_invoices_series_seq', 'invoices', ['series', 'seq'], unique=True)
    op.create_table('invoice_lines',
    sa.Column('invoice', sa.String(length=32), nullable=False),
    sa.Column('pos', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('description', sa.String(length=255), nullable=False),
    sa.Column('net', sa.BigInteger(), nullable=False),
    sa.Column('vat_bp', sa.Integer(), nullable=True),
    sa.Column('tax', sa.BigInteger(), nullable=False),
    sa.Column('dev', sa.String(length=32), nullable=True),
    sa.Column('seq', sa.BigInteger(), nullable=True),
    sa.Column('record_hash', sa.String(length=64), nullable=True),
    sa.Column('main', sa.Boolean(), nullable=False),
    sa.ForeignKeyConstraint(['invoice'], ['invoices.number']),
    sa.PrimaryKeyConstraint('invoice', 'pos')
    )
    op.create_index('ix_invoice_lines_session', 'invoice_lines', ['dev', 'seq'], unique=False)
    op.create_table('billed_sessions',
    sa.Column('dev', sa.String(length=32), nullable=False),
    sa.Column('seq', sa.BigInteger(), nullable=False),
    sa.Column('invoice', sa.String(length=32), nullable=False),
    sa.Column('amount', sa.BigInteger(), nullable=False),
    sa.Column('refunded', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['invoice'], ['invoices.number']),
    sa.PrimaryKeyConstraint('dev', 'seq')
    )
    op.create_index(op.f('ix_billed_sessions_invoice'), 'billed_sessions', ['invoice'], unique=False)
    op.create_table('billing_settings',
    sa.Column('key', sa.String(length=64), nullable=False),
    sa.Column('value', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('key')
    )


def downgrade() -> None:
    op.drop_table('billing_settings')
    op.drop_index(op.f('ix_billed_sessions_invoice'), table_name='billed_sessions')
    op.drop_table('billed_sessions')
    op.drop_index('ix_invoice_lines_session', table_name='invoice_lines')
    op.drop_table('invoice_lines')
    op.drop_index('ix_invoices_series_seq', table_name='invoices')
    op.drop_index(op.f('ix_invoices_refers_to'), table_name='invoices')
    op.drop_index(op.f('ix_invoices_customer_id'), table_name='invoices')
    op.drop_table('invoices')
    op.drop_table('number_series')
    op.drop_index(op.f('ix_card_owners_customer_id'), table_name='card_owners')
    op.drop_table('card_owners')
    op.drop_table('contract_versions')
    op.drop_index(op.f('ix_contracts_customer_id'), table_name='contracts')
    op.drop_table('contracts')
    op.drop_table('customers')
