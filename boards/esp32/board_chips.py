# Pin constraints per ESP32 chip, from the Espressif datasheets and hardware design guidelines.
# Used on the host by tools/flash.py (via pincheck) before a config reaches a board, and by
# pincheck on the device. Data only.


def _span(lo, hi):
    return tuple(range(lo, hi + 1))


CHIPS = {
    "esp32": {
        # GPIO20, 24 and 28..31 do not exist on the ESP32.
        "gpio": _span(0, 19) + (21, 22, 23, 25, 26, 27) + _span(32, 39),
        # SPI0/1 to the module's flash (and GPIO16/17 to PSRAM on WROVER modules).
        "flash": _span(6, 11),
        "psram": (16, 17),
        # No output driver and no internal pull resistors.
        "input_only": _span(34, 39),
        # Sampled at reset: GPIO0/2 select download mode, GPIO12 (MTDI) the flash voltage
        # (high at reset = 1.8 V flash: the board does not boot), GPIO5/15 timing and boot log.
        "strapping": (0, 2, 5, 12, 15),
        # UART0: the USB console that flash.py and mpremote use.
        "console": (1, 3),
        "uarts": (1, 2),  # UART0 is the console
        "i2c": (0, 1),
        "spi": (1, 2),
    },
    "esp32s3": {
        "gpio": _span(0, 21) + _span(26, 48),
        # GPIO26..32 go to the in-package/module flash; GPIO33..37 as well on modules with
        # octal flash or PSRAM (e.g. WROOM-1 N8R8, R8V); treated as reserved everywhere.
        "flash": _span(26, 32),
        "psram": _span(33, 37),
        "input_only": (),
        # GPIO0 and GPIO46 select download mode, GPIO45 the VDD_SPI voltage, GPIO3 JTAG source.
        "strapping": (0, 3, 45, 46),
        # UART0 console (43/44) and the native USB pair (19 D-, 20 D+) for the USB console.
        "console": (19, 20, 43, 44),
        "uarts": (1, 2),
        "i2c": (0, 1),
        "spi": (1, 2),
    },
}
