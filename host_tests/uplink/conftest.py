from __future__ import annotations

import pytest

from sim.backend_peer import AckFaults, BackendPeer


@pytest.fixture
def peer(broker):
    with BackendPeer(broker.host, broker.port) as p:
        yield p


@pytest.fixture
def faulty_peer(broker):
    with BackendPeer(broker.host, broker.port, faults=AckFaults(delay_s=0.05, duplicate=True, reorder=True, bogus=True)) as p:
        yield p
