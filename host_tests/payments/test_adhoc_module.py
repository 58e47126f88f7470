"""firmware/app/adhoc.py under MicroPython: the one-time code, the payment link the display draws,
and what a start command must carry."""


def test_code_link_and_start_command_checks(mpy):
    got = mpy.run("""
from app import adhoc
off = adhoc.Adhoc(None, "evc-1", "EUR")
emit([adhoc.payment_link(), off.code])
changes = []
a = adhoc.Adhoc("https://pay.example/p", "evc-1", "EUR", lambda: changes.append(1))
first = a.code
emit([first, adhoc.payment_link()])
ref = "0123456789abcdef" * 2
def start(**kw):
    doc = {"cmd": "start", "hold": 500, "code": a.code, "currency": "EUR", "ref": ref}
    doc.update(kw)
    try:
        r, d = a.start(doc)
        return d if isinstance(d, str) else [d.ok, d.how, d.cap_cost, d.cap_wh, d.available]
    except ValueError as e:
        return "ValueError: " + str(e)
emit([start(hold=0), start(hold=True), start(ref="XYZ"), start(code=None), start(code="AAAAAAA2"),
      start(currency="USD")])
emit(a.code == first)
emit(start())
emit([a.code != first, len(changes)])
emit(start(code=first))
codes = set()
for _ in range(50):
    codes.add(adhoc.new_code())
emit(len(codes))
""").results
    off, on, bad, unchanged, ok, renewed, stale, distinct = got
    assert off == [None, None]
    code, link = on
    assert len(code) == 8 and all(c in "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567" for c in code)
    assert link == f"https://pay.example/p/evc-1/{code}"
    assert [b.split(":")[0] for b in bad[:4]] == ["ValueError"] * 4
    assert bad[4:] == ["stale-code", "currency"]
    assert unchanged is True  # a refused command does not use the code up
    assert ok == [True, "adhoc", 500, 0, None]
    assert renewed == [True, 1]  # used: a new code, and the status is told
    assert stale == "stale-code"  # the same code again: a replay with a new command id
    assert distinct == 50
