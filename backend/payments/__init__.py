"""Ad-hoc payments (#21): card holds through a payment gateway, the driver's payment page, the
signed start command, capture of exactly the signed total, release, refunds. docs/payments.md."""
