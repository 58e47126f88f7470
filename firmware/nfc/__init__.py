# Card readers: PN532 (HSU, SPI, I2C) and MFRC522 (SPI) drivers, the tap loop, card tokens.
# Drivers share one shape: `await init()`, `await read_uid(buf) -> length or 0`;
# raw UIDs stay inside them and token.py (see docs/nfc.md).


class ReaderError(Exception):
    """The reader answered wrongly or not at all; the tap loop retries with backoff."""


class ReaderTimeout(ReaderError):
    pass


HSU_BAUD = 115200  # the PN532's HSU default
BUSES = ("uart", "i2c", "spi")


def open_driver(kind, url, bus=None, **options):
    """The driver for a reader of kind "pn532" or "mfrc522" on the bus named by url.

    The board opens the bus (board.nfc_bus): url names one of the board's reader wirings ("nfc",
    "nfc_spi"), its UART ("uart1"), a serial device on the host, or tcp://host:port (HSU through
    a serial gateway; on the host also the I2C/SPI bridges to the emulators). bus ("uart", "i2c",
    "spi"; None: the wiring's own) says which bus to expect. The MFRC522 driver speaks SPI only.
    """
    if kind == "mfrc522":
        if bus not in (None, "spi"):
            raise ValueError("the MFRC522 reader is driven over SPI only, not %s" % bus)
        bus = "spi"
    elif kind != "pn532":
        raise ValueError("unknown reader %r: pn532 or mfrc522" % (kind,))
    elif bus is not None and bus not in BUSES:
        raise ValueError("unknown reader bus %r: uart, i2c or spi" % (bus,))
    import board

    # The PN532 shifts SPI data LSB first: the board sets its SPI up that way, so no
    # bit-reversal table is needed in RAM.
    bus, dev, arg = board.nfc_bus(url, bus, HSU_BAUD, kind == "pn532")
    if kind == "mfrc522":
        from nfc.mfrc522 import Mfrc522

        return Mfrc522(dev, arg, **options)
    from nfc import pn532_link
    from nfc.pn532 import Pn532

    if bus == "uart":
        link = pn532_link.Hsu(dev)
    elif bus == "i2c":
        link = pn532_link.I2c(dev, arg or pn532_link.I2C_ADDRESS)
    else:
        link = pn532_link.Spi(dev, arg, lsb_first_bus=True)
    return Pn532(link, **options)
