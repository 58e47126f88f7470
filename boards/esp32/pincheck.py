# Check a board's pin use (its definition plus a config's "pins" overrides) against the chip:
# pins that exist, are not the flash or console, can drive outputs, are not strapping pins
# (unless the board says why it is safe), and no two functions share a pin (an I2C bus shared
# by several devices is one function). Runs under CPython (tools/flash.py) and MicroPython.
from board_chips import CHIPS
from board_defs import BOARDS, REQUIRED_ROLES, ROLE_DIRECTION

# bus kind -> pin fields and their direction
_BUS_PINS = {
    "uart": (("tx", "out"), ("rx", "in")),
    "i2c": (("sda", "io"), ("scl", "io")),
    "spi": (("sck", "out"), ("mosi", "out"), ("miso", "in"), ("cs", "out"), ("rst", "out")),
}


class PinError(ValueError):
    pass


def parse_pin(value):
    """GPIO number from 27, "27" or "GPIO27"; PinError otherwise."""
    if isinstance(value, bool):
        raise PinError("want a GPIO number, got %r" % (value,))
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        text = value.upper()
        if text.startswith("GPIO"):
            text = text[4:]
        if text.isdigit():
            return int(text)
    raise PinError("want a GPIO number such as 27 or \"GPIO27\", got %r" % (value,))


def board(name):
    try:
        return BOARDS[name]
    except KeyError:
        raise PinError("unknown board %r; known boards: %s" % (name, ", ".join(sorted(BOARDS))))


def uses(name, overrides=None, nfc=None):
    """[(field, gpio, direction, group)] for every pin the board uses with these overrides and
    card-reader wiring (nfc: "nfc" when None, or an alternative such as "nfc_spi")."""
    spec = board(name)
    overrides = overrides or {}
    out = []

    def bus(field, conf):
        if not conf:
            return
        kind = conf.get("bus", "uart")
        group = "%s%s" % (kind, conf.get(kind, ""))
        for pin_name, direction in _BUS_PINS[kind]:
            if conf.get(pin_name) is not None:
                out.append(("%s.%s" % (field, pin_name), conf[pin_name], direction, group))

    rs485 = spec.get("rs485")
    if rs485:
        bus("rs485", dict(rs485, bus="uart"))
        de = overrides.get("rs485_de", rs485.get("de"))
        if de is not None:
            out.append(("pins.rs485_de" if "rs485_de" in overrides else "rs485.de", de, "out", None))
    bus(nfc or "nfc", spec.get(nfc or "nfc"))  # one reader wiring at a time: alternatives may share pins
    bus("display", spec.get("display"))
    eth = spec.get("eth")
    if eth:
        for key in ("mdc", "mdio", "power", "ref_clk"):
            out.append(("eth." + key, eth[key], "io", None))
        for gpio in eth["rmii"]:
            out.append(("eth.rmii", gpio, "io", None))
    for role, gpio in spec["pins"].items():
        gpio = overrides.get(role, gpio)
        if gpio is not None:
            out.append(("pins." + role, gpio, ROLE_DIRECTION.get(role, "io"), None))
    for role, gpio in overrides.items():
        if role not in spec["pins"] and role != "rs485_de":
            out.append(("pins." + role, gpio, ROLE_DIRECTION.get(role, "io"), None))
    return out


def check(name, overrides=None, nfc=None):
    """Problems with the board's pin use as a list of "field: message" strings ([] = fine)."""
    try:
        spec = board(name)
    except PinError as exc:
        return ["board: %s" % exc]
    chip = CHIPS[spec["chip"]]
    overrides = overrides or {}
    problems = []
    if not isinstance(overrides, dict):
        return ["pins: must be an object of role -> GPIO"]
    for role in overrides:
        if role not in ROLE_DIRECTION:
            problems.append("pins.%s: unknown role; known roles: %s" % (role, ", ".join(sorted(ROLE_DIRECTION))))
    for role in REQUIRED_ROLES:
        if overrides.get(role, spec["pins"].get(role)) is None:
            problems.append("pins.%s: board %s has no default; set pins.%s in the config" % (role, name, role))
    seen = {}
    for field, value, direction, group in uses(name, {k: v for k, v in overrides.items() if k in ROLE_DIRECTION}, nfc):
        try:
            gpio = parse_pin(value)
        except PinError as exc:
            problems.append("%s: %s" % (field, exc))
            continue
        where = "GPIO%d on %s (board %s)" % (gpio, spec["chip"], name)
        if gpio not in chip["gpio"]:
            problems.append("%s: GPIO%d does not exist on %s (board %s)" % (field, gpio, spec["chip"], name))
            continue
        if gpio in chip["flash"] or (spec.get("psram") and gpio in chip["psram"]):
            problems.append("%s: %s is wired to the module's flash/PSRAM" % (field, where))
        if gpio in chip["console"]:
            problems.append("%s: %s carries the USB console that flashing needs" % (field, where))
        if direction != "in" and gpio in chip["input_only"]:
            problems.append("%s: %s is input-only and cannot drive an output" % (field, where))
        if gpio in chip["strapping"] and gpio not in spec.get("strapping_ok", {}):
            problems.append("%s: %s is a strapping pin (sampled at reset; the board may not boot)" % (field, where))
        other = seen.get(gpio)
        if other is not None and (group is None or other[1] != group):
            problems.append("%s: GPIO%d is already used by %s" % (field, gpio, other[0]))
        elif other is None:
            seen[gpio] = (field, group)
    for field in ("rs485", nfc or "nfc"):
        conf = spec.get(field)
        if conf and conf.get("bus", "uart") == "uart" and conf.get("uart") not in chip["uarts"]:
            problems.append("%s.uart: UART%s is not usable on %s (UART0 is the console)" % (field, conf.get("uart"), spec["chip"]))
    return problems
