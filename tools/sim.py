"""The simulator: real firmware under the MicroPython unix port with simulated peers.

  python tools/sim.py [--micropython PATH] [--heap SIZE]   run the whole simulation
  python tools/sim.py [--micropython PATH] [--heap SIZE] device --root DIR [--meter URL] [--nfc URL] [--broker URL]
                                           run one device with the given root and endpoints
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from sim.device import DeviceProcess  # noqa: E402


def _device_config(root: Path, meter: str | None, nfc: str | None, broker: str | None) -> dict:
    path = root / "config.json"
    cfg = json.loads(path.read_text()) if path.exists() else {}
    if meter:
        cfg.setdefault("meter", {})["url"] = meter
    if nfc:
        cfg.setdefault("nfc", {})["url"] = nfc
    if broker:
        cfg.setdefault("uplink", {})["broker"] = broker
    return cfg


def cmd_device(args: argparse.Namespace) -> int:
    root = Path(args.root)
    cfg = _device_config(root, args.meter, args.nfc, args.broker)
    dev = DeviceProcess(root, cfg, heap=args.heap, echo=True, name=root.name, micropython=args.micropython)
    dev.start()
    try:
        while dev.alive():
            time.sleep(0.2)
    except KeyboardInterrupt:
        pass
    return dev.stop() or 0


def cmd_world(args: argparse.Namespace) -> int:
    from sim import day as simday

    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        return simday.play(Path(args.out), args.scenario, quiet=args.quiet, micropython=args.micropython, heap=args.heap)
    with tempfile.TemporaryDirectory(prefix="evc-sim-") as tmp:  # nobody looks at the frames: not converted
        return simday.play(Path(tmp), args.scenario, quiet=args.quiet, micropython=args.micropython, heap=args.heap,
                           frames=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quiet", action="store_true", help="print only the report")
    parser.add_argument("--out", help="write records, public keys, the backend database, invoices and every "
                        "display frame (DIR/display/CHARGER-<ms>-<n>.png) here")
    parser.add_argument("--scenario", default="day", help="scenario to play")
    parser.add_argument("--micropython", help="run every charger with this interpreter, firmware frozen in "
                        "(make esp32geom builds .esp32geom/micropython); the environment passes through, "
                        "e.g. ESP32GEOM_IDF_HEAP=40960")
    parser.add_argument("--heap", help="MicroPython heap for every charger (-X heapsize), e.g. 56k")
    sub = parser.add_subparsers(dest="cmd")
    d = sub.add_parser("device", help="run one device")
    d.add_argument("--root", required=True, help="device root: flash image, config.json, pins/")
    d.add_argument("--meter", help="meter URL, e.g. tcp://127.0.0.1:5020")
    d.add_argument("--nfc", help="NFC reader URL")
    d.add_argument("--broker", help="mqtt://host:port")
    args = parser.parse_args(argv)
    if args.cmd == "device":
        return cmd_device(args)
    return cmd_world(args)


if __name__ == "__main__":
    sys.exit(main())
