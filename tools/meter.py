"""Read an energy meter once with the firmware's own driver (under the MicroPython unix port).

    python tools/meter.py --port tcp://192.168.1.50:502 --model sdm630
    python tools/meter.py --port /dev/ttyUSB0 --model abb-b23 --unit 3 --baud 19200 --parity E

Prints one JSON reading: {"energy_wh": ..., "power_w": ..., "serial": ..., "model": ...}.
On failure prints the reason to stderr and exits with 1. Technicians use it to commission a
meter (address, baud rate, parity, wiring); the tests use it too.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from sim import mpy  # noqa: E402

_FIRMWARE_SIDE = """
import asyncio
import json
from hal.stream import open_stream
from meter import models
from meter.meter import Meter, MeterError
from meter.modbus import ModbusMaster

a = json.loads(ARGS)

async def main():
    try:
        model = models.get(a["model"], a["generic"])
        stream = open_stream(a["port"], a["baud"], 8, a["parity"], a["stop"])
    except (ValueError, OSError) as exc:
        emit({"error": str(exc)})
        return
    try:
        meter = Meter(ModbusMaster(stream, timeout_ms=a["timeout_ms"], retries=a["retries"]), model, unit=a["unit"])
        r = await meter.poll()
        emit({"energy_wh": r.energy_wh, "power_w": r.power_w, "serial": r.serial, "model": r.model})
    except (MeterError, ValueError) as exc:
        emit({"error": "%s: %s" % (type(exc).__name__, exc)})
    finally:
        stream.close()

asyncio.run(main())
"""


def read_meter(port: str, model: str, unit: int = 1, baud: int = 9600, parity: str = "N", stop: int = 1,
               timeout_ms: int = 500, retries: int = 2, generic: dict | None = None) -> dict:
    """One reading as a dict, or {"error": message}."""
    args = {"port": port, "model": model, "unit": unit, "baud": baud, "parity": parity, "stop": stop,
            "timeout_ms": timeout_ms, "retries": retries, "generic": generic}
    code = _FIRMWARE_SIDE.replace("ARGS", repr(json.dumps(args)))
    result = mpy.run(code, timeout=30, check=False)
    if len(result.results) != 1:
        return {"error": f"firmware failed (exit {result.returncode}): {result.stderr.strip()[-500:]}"}
    return result.results[0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", required=True, help="tcp://host:port (RS-485 gateway) or a serial device path")
    parser.add_argument("--model", required=True, help="sdm120, sdm230, sdm630, sdm72, abb-b23, abb-b24, em340, "
                                                       "eem-350, finder-7e or generic (with --generic)")
    parser.add_argument("--unit", type=int, default=1, help="Modbus unit id (default 1)")
    parser.add_argument("--baud", type=int, default=9600)
    parser.add_argument("--parity", choices=["N", "E", "O"], default="N")
    parser.add_argument("--stop", type=int, choices=[1, 2], default=1)
    parser.add_argument("--timeout-ms", type=int, default=500, help="response timeout per try (default 500)")
    parser.add_argument("--retries", type=int, default=2)
    parser.add_argument("--generic", type=Path, help="JSON file with the register map of a generic meter")
    args = parser.parse_args(argv)
    generic = None
    if args.generic:
        try:
            generic = json.loads(args.generic.read_text())
        except (OSError, ValueError) as exc:
            print(f"meter: cannot read {args.generic}: {exc}", file=sys.stderr)
            return 2
    out = read_meter(args.port, args.model, args.unit, args.baud, args.parity, args.stop, args.timeout_ms,
                     args.retries, generic)
    if "error" in out:
        print(f"meter: {out['error']}", file=sys.stderr)
        return 1
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
