# MicroPython side of the meter tests: builds the firmware's Meter on a stream URL and obeys
# one JSON command per stdin line, answering "=> <json>" on stdout.
import json
import sys

import asyncio
from hal import clock
from hal.stream import open_stream
from meter import models
from meter.meter import Meter, MeterError
from meter.modbus import ModbusError, ModbusMaster

events = []
state = {}


def error(exc):
    cause = getattr(exc, "cause", exc)
    return {"err": type(exc).__name__, "cause": type(cause).__name__, "code": getattr(cause, "code", None),
            "msg": str(exc)}


async def handle(cmd):
    op = cmd["op"]
    if op == "open":
        s = open_stream(cmd["url"], cmd.get("baud", 9600), 8, cmd.get("parity", "N"), cmd.get("stop", 1))
        master = ModbusMaster(s, timeout_ms=cmd.get("timeout_ms", 200), retries=cmd.get("retries", 2))
        model = models.get(cmd["model"], cmd.get("generic"))
        state["master"] = master
        state["meter"] = Meter(master, model, on_event=lambda name, info: events.append([name, info]),
                               **cmd.get("meter", {}))
        return {"blocks": [list(b) for b in model.blocks]}
    meter = state.get("meter")
    master = state.get("master")
    if op == "poll":
        try:
            return {"ok": (await meter.poll()).as_dict()}
        except MeterError as exc:
            return error(exc)
    if op == "fresh":
        r = meter.fresh(cmd.get("max_age_ms"))
        return r.as_dict() if r else None
    if op == "sleep":
        await clock.sleep_ms(cmd["ms"])
        return True
    if op == "events":
        return events
    if op == "stats":
        return {k: getattr(master, k) for k in ("tx_bytes", "rx_bytes", "transactions", "retried", "failures")}
    if op == "read":
        try:
            raw = await master.read(cmd["unit"], cmd["fn"], cmd["addr"], cmd["count"])
            return {"ok": [b for b in raw]}
        except ModbusError as exc:
            return error(exc)
    if op == "write":
        try:
            if "values" in cmd:
                await master.write_registers(cmd["unit"], cmd["addr"], cmd["values"])
            else:
                await master.write_register(cmd["unit"], cmd["addr"], cmd["value"])
            return {"ok": True}
        except ModbusError as exc:
            return error(exc)
    raise ValueError("unknown op %s" % op)


async def main():
    while True:
        line = sys.stdin.readline()
        if not line:
            return
        try:
            out = await handle(json.loads(line))
        except Exception as exc:  # reported to the test, which fails with the message
            out = {"crash": "%s: %s" % (type(exc).__name__, exc)}
        sys.stdout.write("=> " + json.dumps(out) + "\n")


asyncio.run(main())
