"""Read one card with the firmware's own NFC driver (under the MicroPython unix port) and print it as JSON.

  python tools/nfc.py --port tcp://10.0.0.7:4001 --secret 00112233445566778899aabbccddeeff
  python tools/nfc.py --port /dev/ttyUSB0 --show-uid          # commissioning: also the raw UID
  python tools/nfc.py --port tcp://127.0.0.1:5000 --reader mfrc522      # the SPI bridge of an emulator
  python tools/nfc.py --port tcp://127.0.0.1:5001 --bus i2c             # a PN532 emulator behind the I2C bridge

Prints {"token": ..., "uid_len": ...} (token null without --secret; "uid" only with --show-uid).
Exit status 0 with a card, 1 on error or timeout (message on stderr).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from sim import mpy  # noqa: E402


def _secret(text: str) -> str:
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raise argparse.ArgumentTypeError("not hex") from None
    if len(raw) < 16:
        raise argparse.ArgumentTypeError("the site secret needs at least 16 bytes (32 hex digits)")
    return raw.hex()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", required=True, help="tcp://host:port or a serial device path (PN532 HSU)")
    parser.add_argument("--reader", choices=("pn532", "mfrc522"), default="pn532")
    parser.add_argument("--bus", choices=("uart", "i2c", "spi"),
                        help="the reader's bus (default: HSU for a pn532, SPI for an mfrc522); i2c and spi "
                             "reach an emulator through the host's tcp:// bus bridges")
    parser.add_argument("--secret", type=_secret, help="site secret, hex: print the card token too")
    parser.add_argument("--show-uid", action="store_true", help="also print the raw UID (card issue only)")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for a card (default 10)")
    args = parser.parse_args(argv)
    if not 0 < args.timeout <= 3600:
        parser.error("--timeout must be between 0 and 3600 seconds")
    call = json.dumps([args.reader, args.port, args.secret, int(args.timeout * 1000), args.show_uid, args.bus])
    code = f"""
import asyncio, json
from nfc.probe import probe
try:
    emit({{"ok": asyncio.run(probe(*json.loads({call!r})))}})
except Exception as exc:
    emit({{"error": "%s: %s" % (type(exc).__name__, exc)}})
"""
    try:
        result = mpy.run(code, timeout=args.timeout + 15, check=False)
    except mpy.MicroPythonError as exc:
        print(f"nfc: the reader process hung: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 1
    if len(result.results) != 1:
        print(f"nfc: the reader process failed (exit {result.returncode}):\n{result.stderr[-2000:]}", file=sys.stderr)
        return 1
    answer = result.results[0]
    if "error" in answer:
        print(f"nfc: {answer['error']}", file=sys.stderr)
        return 1
    print(json.dumps(answer["ok"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
