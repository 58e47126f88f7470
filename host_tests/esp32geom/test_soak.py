"""A soak on the ESP32's heap geometry: consecutive sessions on one charger with the uplink
connected to the reference backend, the firmware frozen; no MemoryError, every record stored,
and the largest free block does not shrink from the first session to the last (fragmentation)."""
from __future__ import annotations

from sim import esp32geom as geom
from sim import soak

# The acceptance geometry of issue 16: 56k + a 40,960 B IDF budget (a stock ESP32 keeping its WiFi/TLS reserve)
SOAK_BUDGET = geom.STOCK_IDF_BUDGET


def test_consecutive_sessions_with_the_uplink_do_not_fragment_the_heap(esp32geom, broker, tmp_path, exhaustive):
    n = 300 if exhaustive else 20  # 20: the first and the last 10 sessions compared below
    r = soak.run(tmp_path, broker.url, n, SOAK_BUDGET, micropython=str(esp32geom))
    print(f"\nsoak: {n} sessions; largest free block {r.free_after[1]} B after the first, {r.free_after[n]} B "
          f"after the last; live heap {r.heap_after_boot} B after boot, {max(r.heap_at_seal)} B at most before "
          f"signing; {r.garbage_per_session} B garbage per session; IDF heap taken at most {r.peak_idf} B")
    assert r.memory_errors == 0, r.output[-3000:]
    assert r.stored == n and len(r.heap_at_seal) == n
    assert r.peak_idf is not None and r.peak_idf <= SOAK_BUDGET
    # fragmentation does not creep: the last sessions' largest free block (median over a window of
    # sessions, sim/soak.py) keeps at least 80 % of the first sessions'
    first, last = r.free_window(first=True), r.free_window(first=False)
    print(f"soak: largest free block, median of the first 10 sessions {first} B, of the last 10 {last} B")
    assert last >= first * 8 // 10, r.free_by_session
