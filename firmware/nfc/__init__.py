# Card readers: PN532 (HSU, SPI, I2C) and MFRC522 (SPI) drivers, the tap loop, card tokens.
# Drivers share one shape: `await init()`, `await read_uid(buf) -> length or 0`;
# raw UIDs stay inside them and token.py (see docs/nfc.md).


class ReaderError(Exception):
    """The reader answered wrongly or not at all; the tap loop retries with backoff."""


class ReaderTimeout(ReaderError):
    pass


HSU_BAUD = 115200  # the PN532's HSU default


def open_driver(kind, url, **options):
    """The driver for a reader of kind "pn532" or "mfrc522" on the bus named by url.

    pn532: url is a stream URL (tcp://host:port, a serial path, "uart1"), spoken as HSU.
    mfrc522: tcp://host:port reaches the host SPI bridge (boards/host/spi_bridge.py);
    any other name goes to board.open_spi(url) -> (spi, cs).
    """
    if kind == "pn532":
        from hal.stream import open_stream

        from nfc.pn532 import Pn532
        from nfc.pn532_link import Hsu

        return Pn532(Hsu(open_stream(url, HSU_BAUD)), **options)
    if kind == "mfrc522":
        from nfc.mfrc522 import Mfrc522

        if url.startswith("tcp://"):
            from spi_bridge import SpiBridge

            bridge = SpiBridge(url)
            return Mfrc522(bridge, bridge.cs, **options)
        import board

        spi, cs = board.open_spi(url)
        return Mfrc522(spi, cs, **options)
    raise ValueError("unknown reader %r: pn532 or mfrc522" % (kind,))
