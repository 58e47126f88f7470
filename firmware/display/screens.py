# What each screen says, as lines of text: a graphic screen (16 columns x 8 rows of the 8x8
# font on 128x64) and a 20x4 character LCD get their own layout of the same facts. A screen is
# (lines, link): link is the text of a QR code the graphic screen draws (None: none).
from billing.tariff import ENERGY, FLAT, PARKING_TIME, TIME
from display import fmt

# the unit each price dimension is per, long (graphic) and short (LCD)
_PER = {ENERGY: ("/kWh", "/kWh"), TIME: ("/h", "/h"), FLAT: ("/session", "/start"), PARKING_TIME: ("/h park", "/h P")}
_REASONS = {
    "unknown": "Unknown card",
    "blocked": "Card blocked",
    "expired": "Card expired",
    "balance": "Balance too low",
    "offline-not-allowed": "Offline: no auth",
    "journal-full": "Storage full",
    "tariff-missing": "No tariff yet",
    "recovering": "Starting up",
    "unplugged": "Plug in first",
    "meter-fault": "Meter fault",
    "busy": "Charger busy",
}


def reason_text(reason):
    return _REASONS.get(reason) or str(reason)


def _fit(lines, cols, rows):
    out = [line[:cols] for line in lines[:rows]]
    return tuple(out)


def idle(prices, currency, minor, cols, rows, not_ready=None, link=None):
    """prices: [(dimension, price_u, vat_bp)] (display/prices.py); link: the ad-hoc payment link
    (app/adhoc.py) a graphic screen shows as a QR code beside the prices, cols then being the
    columns left of it (render.text_cols)."""
    if not_ready:
        return _fit(("Not available", "", reason_text(not_ready)), cols, rows), None
    parts = [(fmt.unit_price(p, vat, minor), _PER[dim]) for dim, p, vat in prices]
    if rows >= 8 and link:
        # 10 or 11 columns beside a version 3-4 code: the short units, VAT under the title
        lines = ["Prices " + currency if cols >= 7 + len(currency) else currency, "incl. VAT"]
        for value, per in parts:
            lines.append(value + per[1])
        while len(lines) < rows - 2:
            lines.append("")
        lines += ["Tap card or", "scan to pay"] if cols >= 11 else ["Tap card", "or scan"]
        return _fit(lines, cols, rows), link
    if rows >= 8:
        lines = ["Price incl. VAT"]
        for value, per in parts:
            lines.append("%s %s%s" % (value, currency, per[0]))
        while len(lines) < rows - 2:
            lines.append("")
        lines += ["Tap card or", "scan to pay"]
        return _fit(lines, cols, rows), None
    # the LCD: the currency once, the prices wrapped over two lines
    lines = ["%s incl. VAT" % currency]
    row = ""
    for value, per in parts:
        item = value + per[1]
        if row and len(row) + 1 + len(item) > cols:
            lines.append(row)
            row = item
        else:
            row = row + " " + item if row else item
    if row:
        lines.append(row)
    lines.append("Tap card / scan pay" if cols < 23 else "Tap card or scan to pay")
    if len(lines) > rows:
        lines.pop(0)  # the prices come first: without the header line
    if len(lines) > rows:
        lines.pop()  # ... and, when they still need the room, without the call to tap
    return _fit(lines, cols, rows), None


def authorizing(cols, rows):
    return _fit(("Checking card", "", "Please wait"), cols, rows), None


def refused(reason, cols, rows):
    if rows >= 8:
        return _fit(("Not authorized", "", reason_text(reason), "", "Ask the operator"), cols, rows), None
    return _fit(("Not authorized", reason_text(reason), "", "Ask the operator"), cols, rows), None


def charging(wh, seconds, cost, currency, minor, paused, cols, rows):
    head = "Paused (EV)" if paused else "Charging"
    money = "%s %s" % (fmt.amount(cost, minor), currency)
    if rows >= 8:
        lines = (head, "", "Energy", fmt.kwh(wh) + " kWh", "Time " + fmt.duration(seconds), "", "Cost so far",
                 money)
    else:
        lines = (head, "%s kWh  %s" % (fmt.kwh(wh), fmt.duration(seconds)), "Cost so far", money)
    return _fit(lines, cols, rows), None


def finishing(cols, rows):
    return _fit(("Finishing", "", "Signing record"), cols, rows), None


def faulted(cols, rows):
    return _fit(("Out of order", "", "Meter fault"), cols, rows), None


def _pair(lines, value, unit, cols):
    # "12.34 EUR" on one line where the columns beside the QR code allow, else on two
    if len(value) + 1 + len(unit) <= cols:
        lines.append(value + " " + unit)
    else:
        lines += [value, unit]


def receipt_link(base, dev, seq):
    """The session's receipt page: base URL + device + record sequence number."""
    return "%s/%s/%d" % (base.rstrip("/"), dev, seq)


def final(total, currency, minor, wh, link, cols, rows):
    """cols: the text columns beside the QR code on a graphic screen; the LCD shows the link's
    last part (a character LCD cannot draw a QR code)."""
    money = fmt.amount(total, minor)
    if rows >= 8:
        lines = ["Total"]
        _pair(lines, money, currency, cols)
        lines.append("")
        _pair(lines, fmt.kwh(wh), "kWh", cols)
        lines += ["", "Scan for", "receipt"]
        return _fit(lines, cols, rows), link
    tail = link.rsplit("/", 2)
    lines = ("Total %s %s" % (money, currency), "Energy %s kWh" % fmt.kwh(wh), "Receipt " + "/".join(tail[-2:]),
             "Thank you")
    return _fit(lines, cols, rows), None
