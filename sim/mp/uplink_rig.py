# MicroPython side of the uplink tests: a record store (RAM, or the real journal when
# asked), fake signed records, an event-loop lag probe, and a runner that drives the real
# Uplink until every record is acknowledged or a deadline passes.
import json
import sys

try:
    import asyncio
except ImportError:
    import uasyncio as asyncio

from hal import clock
from hosttest import emit


def fake_payload(dev, seq, size):
    body = {"v": 1, "dev": dev, "seq": seq, "pad": ""}
    base = len(json.dumps(body))
    body["pad"] = "x" * max(0, (size * 3) // 4 - base - 120)
    return json.dumps(body).encode()


def fake_record(dev, seq, size, payload=None):
    # Shaped like the real thing (a compact JWS of a JSON record) without the cost of signing:
    # the backend peer in these tests reads seq from the payload and does not verify. Its signed
    # ack names the SHA-256 of the payload, which the store keeps (digest()).
    from crypto import b64url

    head = b64url.encode(b'{"alg":"ES256","kid":"' + dev.encode() + b'"}')
    return head + b"." + b64url.encode(payload or fake_payload(dev, seq, size)) + b"." + b"A" * 86


class RamStore:
    """pending/ack/acked_seq/next_seq/usage over records made on demand."""

    def __init__(self, dev, count=0, size=900):
        self.dev = dev
        self.size = size
        self._acked = 0
        self._next = count + 1
        self.ack_calls = 0
        self.ack_regress = 0

    def append(self, n=1):
        self._next += n

    def pending(self, after_seq=None, limit=16, on_flash=False):
        seq = (self._acked if after_seq is None else after_seq) + 1
        while seq < self._next and limit > 0:
            yield seq, fake_record(self.dev, seq, self.size)
            seq += 1
            limit -= 1

    def ack(self, seq):
        self.ack_calls += 1
        if seq <= self._acked or seq >= self._next:
            self.ack_regress += 1
            raise ValueError("bad ack %d (acked %d, next %d)" % (seq, self._acked, self._next))
        self._acked = seq

    def acked_seq(self):
        return self._acked

    def next_seq(self):
        return self._next

    def digest(self, seq):
        import hashlib

        if not self._acked < seq < self._next:
            return None
        return hashlib.sha256(fake_payload(self.dev, seq, self.size)).digest()

    def usage(self):
        return {"records": self._next - 1 - self._acked}


class LagProbe:
    """Measures how late a 10 ms sleep wakes up: the event loop's longest stall."""

    def __init__(self, period_ms=10):
        self.period_ms = period_ms
        self.max_ms = 0
        self.over_100 = 0
        self.samples = 0

    async def run(self):
        import time

        while True:
            t = time.ticks_ms()
            await asyncio.sleep_ms(self.period_ms)
            lag = time.ticks_diff(time.ticks_ms(), t) - self.period_ms
            self.samples += 1
            if lag > 100:
                self.over_100 += 1
            if lag > self.max_ms:
                self.max_ms = lag


JOURNAL_MOUNT = "/jflash"


def journal_store(spec, dev):
    """The real journal (firmware/journal) on LittleFS over a RAM flash (the power-cut device)."""
    import vfs
    from journal.journal import Journal
    from powercut import PowerCutDevice

    kb = spec.get("flash_kb", 2048)
    bdev = PowerCutDevice(4096, kb // 4)
    vfs.VfsLfs2.mkfs(bdev)
    vfs.mount(vfs.VfsLfs2(bdev), JOURNAL_MOUNT)
    import os

    os.mkdir(JOURNAL_MOUNT + "/journal")
    j = Journal(JOURNAL_MOUNT + "/journal", max_bytes=(kb - 256) * 1024)
    j.recover()
    return j


_KEY = None  # spec "priv": records are real, signed and chained (for the reference backend)


def real_record(store, dev, seq):
    from billing import record

    wh = 1000000 + seq * 7000
    fields = {"dev": dev, "seq": seq, "prev": store.prev_hash(), "token": "%032x" % seq, "auth": "list",
              "contract": None, "tariff": {"id": "T1", "ver": 1},
              "start": {"t": 1790000000 + seq * 3600, "tq": "S", "wh": wh},
              "stop": {"t": 1790000000 + seq * 3600 + 1800, "tq": "S", "wh": wh + 7000, "reason": "card"},
              "meter": {"model": "sdm630", "serial": "21000042"},
              "cost": {"currency": "EUR", "excl": 277, "incl": 330, "lines": []}, "flags": [], "fw": "bench"}
    return record.seal(_KEY, fields)


def commit(store, dev, size):
    seq = store.next_seq()
    if _KEY is not None:
        payload, signed = real_record(store, dev, seq)
        store.commit_record(seq, payload, signed)
        return seq
    if isinstance(store, RamStore):
        store.append()
    else:
        payload = fake_payload(dev, seq, size)
        store.commit_record(seq, payload, fake_record(dev, seq, size, payload))
    return seq


def make_store(spec, dev):
    global _KEY
    if spec.get("priv"):
        from crypto.keys import Key

        _KEY = Key(int(spec["priv"], 16))
    kind = spec.get("store", "ram")
    if kind == "ram":
        return RamStore(dev, spec.get("prefill", spec.get("records", 0)), spec.get("size", 900))
    if kind == "journal":
        j = journal_store(spec, dev)
        for _ in range(spec.get("prefill", 0)):
            commit(j, dev, spec.get("size", 900))
        return j
    raise ValueError("unknown store %r" % kind)


async def produce(store, up, dev, want, size, every_ms):
    # a charger finishing sessions while the uplink drains: journal, then kick the uplink
    while store.next_seq() <= want:
        commit(store, dev, size)
        up.kick()
        await asyncio.sleep_ms(every_ms)


def stats(up, store, lag, t0):
    import time

    f = up.forwarder
    return {
        "acked": store.acked_seq(), "next": store.next_seq(), "sent": f.sent, "resent": f.resent,
        "acks_ignored": f.acks_ignored, "acks_verified": f.acks_verified, "auth_rejected": up.auth.rejected,
        "connects": up.connects, "max_lag_ms": lag.max_ms,
        "lag_over_100": lag.over_100, "lag_samples": lag.samples,
        "elapsed_ms": time.ticks_diff(time.ticks_ms(), t0),
        "ack_regress": getattr(store, "ack_regress", 0), "online": up.online, "store": type(store).__name__,
        "downlink": up.downlink.versions(), "applied": up.downlink.applied,
        "rejected": up.downlink.rejected, "error": str(up.conn.error) if up.conn and up.conn.error else None,
    }


async def drive(spec):
    """Run an Uplink per spec until spec['records'] are acked (or spec['deadline_ms'])."""
    import time

    from uplink.service import Uplink

    dev = spec.get("dev", "dev1")
    store = make_store(spec, dev)
    applied = []

    def keep(kind):
        def apply(*args):
            if kind == "authlist":
                meta, parts = args
                entries = []
                for p in parts():
                    entries.extend(p)
                applied.append([kind, meta, entries])
            else:
                doc = args[0]
                if doc.get("refuse"):
                    raise ValueError("refused by owner")
                applied.append([kind, doc])
        return apply

    cfg = {"uplink": spec["uplink"], "backend_key": spec.get("backend_key"), "auth": {"online_timeout_ms": 2000}}
    up = Uplink(cfg, dev, store, keep("tariff"), keep("authlist"), keep("cmd"),
                lambda: {"state": "idle", "fw": "test"}, state_dir=spec.get("state_dir", "/tmp"))
    lag = LagProbe()
    t0 = time.ticks_ms()  # the drain clock starts after any prefill
    asyncio.create_task(lag.run())
    task = asyncio.create_task(up.run())
    if store.next_seq() <= spec.get("records", 0):
        asyncio.create_task(produce(store, up, dev, spec["records"], spec.get("size", 900), spec.get("produce_ms", 2)))
    want = spec.get("records", 0)
    deadline = clock.deadline(spec.get("deadline_ms", 60000))
    progress_every = spec.get("progress_every", 0)
    last_progress = 0
    report_ms = spec.get("report_ms", 0)  # emit {"report": {acked, acks_ignored, ...}} this often
    report_at = clock.deadline(report_ms)
    auth_answers = []
    offline_answers = []
    for token in spec.get("authorize_offline", []):
        offline_answers.append(await up.authorize(token))
    for token in spec.get("authorize", []):
        while not up.online and not clock.expired(deadline):
            await asyncio.sleep_ms(20)
        auth_answers.append(await up.authorize(token))
    for name in spec.get("events", []):
        up.event(name, detail="test")
    hold_ms = spec.get("hold_ms", 0)
    hold_until = clock.deadline(hold_ms)
    linger_at = None
    done_ms = None
    while not clock.expired(deadline):
        if store.acked_seq() >= want and clock.expired(hold_until):
            if done_ms is None:
                done_ms = time.ticks_ms()
            if linger_at is None:  # all acked: stay a little for the last status message
                linger_at = clock.deadline(spec.get("linger_ms", 0))
            if clock.expired(linger_at):
                break
        if progress_every and store.acked_seq() - last_progress >= progress_every:
            last_progress = store.acked_seq()
            emit({"progress": last_progress})
        if report_ms and clock.expired(report_at):
            report_at = clock.deadline(report_ms)
            emit({"report": {"acked": store.acked_seq(), "acks_ignored": up.forwarder.acks_ignored,
                             "acks_verified": up.forwarder.acks_verified, "online": up.online}})
        await asyncio.sleep_ms(20)
    task.cancel()
    result = stats(up, store, lag, t0)
    result["drain_ms"] = time.ticks_diff(done_ms, t0) if done_ms else None
    result["applied_docs"] = applied
    result["auth"] = auth_answers
    result["auth_offline"] = offline_answers
    emit(result)


def main():
    with open(sys.argv[1]) as f:  # a file: the unix port cannot take long arguments
        spec = json.loads(f.read())
    asyncio.run(drive(spec))


if __name__ == "__main__":
    main()
