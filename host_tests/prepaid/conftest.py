"""Fixtures for the prepaid suite, imported from the suites that define them: databases (SQLite
and PostgreSQL) and backend processes from host_tests/backend, charger rigs from host_tests/charger."""
from host_tests.backend.conftest import backends, db_target  # noqa: F401
from host_tests.charger.conftest import charger  # noqa: F401
