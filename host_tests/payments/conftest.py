"""Fixtures for the payment tests: the charger rig of host_tests/charger (the real firmware), the
backend suite's databases (SQLite and PostgreSQL), the Stripe emulator driven through the SDK."""
from __future__ import annotations

import pytest

from host_tests.backend.conftest import db_target  # noqa: F401 - SQLite and PostgreSQL, shared
from host_tests.charger.conftest import charger  # noqa: F401 - the rig fixture, shared
from sim.stripe_emu import StripeEmulator


@pytest.fixture
def stripe_emu():
    with StripeEmulator() as emu:
        yield emu
