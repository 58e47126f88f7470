"""Billing: customers, contracts, billing runs, invoices, credit notes, receipts, exports."""
