# Billing: tariffs and pricing (tariff.py, pricing.py, tz.py), sessions, authorization, journal.
