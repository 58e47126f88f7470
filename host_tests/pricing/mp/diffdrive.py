# MicroPython side of the differential tests: cases as JSON lines in a file, one result line each.
#
# A case: {"doc", "start", "tq", "periods"[, "start_wh", "parking_w", "samples"]}. The periods (mWh,
# ms) go to price_periods; the samples, when given, to a live Pricer as the charger feeds it. Each
# result is summed per dimension in mWh / ms: [excl, incl, bound, flat element, {dim: [qty, billed]}].
import json

from billing.pricing import Pricer, price_periods
from billing.tariff import TariffSet
from hosttest import emit


def summary(res):
    k = 1000 if "energy_wh" in res else 1  # live results are in Wh and s
    dims = {}
    flat = None
    for ln in res["lines"]:
        if ln["dim"] == "FLAT":
            flat = ln["el"]
            continue
        d = dims.setdefault(ln["dim"], [0, 0])
        d[0] += ln["qty"] * k
        d[1] += ln["billed"] * k
    return [res["excl"], res["incl"], res.get("bound"), flat, dims]


def one(c):
    s = TariffSet.from_doc(c["doc"])
    t = s.select(None)
    out = {"cdr": summary(price_periods(t, s.tz, c["start"], c["periods"], c["tq"], milli=True))}
    if "samples" in c:
        p = Pricer(t, s.tz, c["start"], c["start_wh"], c["tq"], c["parking_w"])
        for smp in c["samples"]:
            p.add_sample(smp[0], smp[1], smp[2], smp[3])
        out["live"] = summary(p.finish(p.t, p.wh))
    return out


def run(path):
    with open(path) as f:
        while True:
            line = f.readline()
            if not line:
                break
            try:
                emit(one(json.loads(line)))
            except ValueError as e:
                emit({"error": "%s: %s" % (type(e).__name__, e)})
