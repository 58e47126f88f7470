# MicroPython side of the pricing tests: run many sessions in one process (JSON file in, results out).
import json

from billing.pricing import Pricer, price_periods
from billing.tariff import TariffSet


def session(c):
    s = TariffSet.from_doc(c["doc"])
    p = Pricer(s.select(c.get("contract")), s.tz, c["start"], c.get("start_wh", 0), c.get("tq", "S"), c.get("parking_w", 0))
    running = [list(p.running_cost())]
    for smp in c["samples"]:
        p.add_sample(*smp)
        running.append(list(p.running_cost()))
    stop = c.get("stop")
    final = p.finish(*stop) if stop else p.finish(p.t, p.wh)
    return {"running": running, "final": final}


def periods(c):
    s = TariffSet.from_doc(c["doc"])
    return price_periods(s.select(c.get("contract")), s.tz, c["start"], c["periods"], c.get("tq", "S"))


def batch(path):
    with open(path) as f:
        cases = json.load(f)
    out = []
    for c in cases:
        try:
            out.append(session(c) if "samples" in c else periods(c))
        except ValueError as e:
            out.append({"error": "%s: %s" % (type(e).__name__, e)})
    return out
