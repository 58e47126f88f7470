"""The Tariffs page's work: which charger holds which tariff version, and an OCPI tariff's price
for an example session computed by the device's own engine (tools/price.py: the firmware's
billing.pricing under the MicroPython port, as the chargers price)."""
from __future__ import annotations

import datetime as dt
import json

from sqlalchemy import func, select

from backend.models import Device, DeviceState, Downlink, TariffSource

MAX_TARIFF_BYTES = 64 * 1024


class TariffInputError(ValueError):
    pass


def holdings(db) -> list[dict]:
    """Per charger: the version it reports, the last pushed, and its tariff sources (contract -> id)."""
    pushed = dict(db.execute(select(Downlink.dev, func.max(Downlink.ver)).where(Downlink.type == "tariff")
                             .group_by(Downlink.dev)).all())
    held = dict(db.execute(select(DeviceState.dev, DeviceState.tariff_ver)).all())
    sources: dict[str, list[tuple[str, str]]] = {}
    for dev, contract, ocpi in db.execute(select(TariffSource.dev, TariffSource.contract, TariffSource.ocpi)
                                          .order_by(TariffSource.dev, TariffSource.contract)):
        try:
            tid = str(json.loads(ocpi).get("id", "?"))
        except (ValueError, AttributeError):
            tid = "?"
        sources.setdefault(dev, []).append((contract or "(default)", tid))
    return [{"dev": d, "held": held.get(d), "pushed": pushed.get(d), "sources": sources.get(d, [])}
            for d in db.scalars(select(Device.id).order_by(Device.id))]


def parse(data: bytes) -> dict:
    if len(data) > MAX_TARIFF_BYTES:
        raise TariffInputError(f"tariff file over {MAX_TARIFF_BYTES // 1024} KiB")
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise TariffInputError(f"tariff: not JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise TariffInputError("tariff: an OCPI 2.2.1 Tariff object expected")
    return doc


def example_cdr(start: str, minutes: int, kwh: str) -> dict:
    """One charging period: kwh over minutes from start (YYYY-MM-DDTHH:MM, UTC)."""
    try:
        t = dt.datetime.fromisoformat(start).replace(tzinfo=dt.timezone.utc)
    except ValueError:
        raise TariffInputError(f"start: {start[:30]!r} is not a date and time") from None
    if not 1 <= minutes <= 7 * 24 * 60:
        raise TariffInputError("minutes: 1 to 10080")
    try:
        energy = float(kwh)
    except ValueError:
        raise TariffInputError(f"kWh: {kwh[:20]!r} is not a number") from None
    if not 0 <= energy <= 1000:
        raise TariffInputError("kWh: 0 to 1000")
    iso = lambda x: x.strftime("%Y-%m-%dT%H:%M:%SZ")  # noqa: E731
    return {"start_date_time": iso(t), "end_date_time": iso(t + dt.timedelta(minutes=minutes)),
            "charging_periods": [{"start_date_time": iso(t), "dimensions": [
                {"type": "ENERGY", "volume": kwh.strip()}, {"type": "TIME", "volume": f"{minutes / 60:.6f}"}]}]}


def preview(tariff: dict, cdr: dict, tz: str | None) -> dict:
    """tools/price.py's answer (total, per dimension), or TariffInputError with its reason."""
    from evc.localtime import ZoneError  # noqa: PLC0415
    from tools import price  # noqa: PLC0415 - the MicroPython engine, only when asked

    try:
        return price.price(tariff, cdr, tz or None)
    except (price.EngineError, ZoneError, ValueError) as exc:  # InputError, TariffCompileError: ValueErrors
        raise TariffInputError(str(exc)) from None
