# Supported boards, as data: which GPIO does what. tools/flash.py deploys the board's name to
# /board.txt; boards/esp32/board.py reads it and builds pins and buses from this table.
# `pins` maps roles to GPIOs (None: the board has none; the firmware does without it). A config
# file may override any role ("pins": {"relay": 27}); pincheck rejects what the chip forbids.
# `strapping_ok` names strapping pins that are safe for a role on this board, with the reason.
# `nfc` is the card reader's wiring (bus "uart": a PN532 on HSU, "i2c": a PN532 at "addr", "spi":
# a PN532 or an MFRC522 with chip select "cs" and optional reset "rst", driven high to run);
# `nfc_spi` an alternative wiring on SPI, pins of its own, for an MFRC522 (or a PN532 set to
# SPI). The config's nfc.url names the one the charger uses ("nfc", "nfc_spi").
#
# Reference wiring, to be checked against each board's schematic and revision before building
# a charger: the pins a board leaves free differ between revisions.

BOARDS = {
    "esp32-devkitc": {
        "title": "Espressif ESP32-DevKitC (ESP32-WROOM-32)",
        "chip": "esp32",
        "psram": False,  # WROOM-32: GPIO16/17 are free (not on WROVER modules)
        "rs485": {"uart": 2, "tx": 17, "rx": 16, "de": 4},
        "nfc": {"bus": "uart", "uart": 1, "tx": 33, "rx": 32},
        # MFRC522 module: SCK, MOSI on HSPI's own pins, MISO and SDA (its chip select) through the
        # GPIO matrix; RST on GPIO33, the HSU wiring's TX (a charger has one reader: either wiring).
        "nfc_spi": {"bus": "spi", "spi": 1, "sck": 14, "mosi": 13, "miso": 19, "cs": 23, "rst": 33},
        "display": {"bus": "i2c", "i2c": 0, "sda": 21, "scl": 22, "addr": 0x3C},
        "eth": None,
        "pins": {
            "relay": 26,
            "plug": 35,
            "led_ok": 25,
            "led_fault": 27,
            "buzzer": 18,
            "maintenance": 0,
        },
        "strapping_ok": {0: "the BOOT button: read after boot, pressed = maintenance"},
    },
    "esp32-s3-devkitc-1": {
        "title": "Espressif ESP32-S3-DevKitC-1 (ESP32-S3-WROOM-1)",
        "chip": "esp32s3",
        "psram": True,  # N8R8 variants: octal PSRAM takes GPIO33..37
        "rs485": {"uart": 1, "tx": 17, "rx": 18, "de": 8},
        "nfc": {"bus": "uart", "uart": 2, "tx": 15, "rx": 16},
        # MFRC522 module on the FSPI pins (GPIO10 CS, 11 MOSI, 12 SCK, 13 MISO); RST on GPIO14.
        "nfc_spi": {"bus": "spi", "spi": 1, "sck": 12, "mosi": 11, "miso": 13, "cs": 10, "rst": 14},
        "display": {"bus": "i2c", "i2c": 0, "sda": 41, "scl": 42, "addr": 0x3C},
        "eth": None,
        "pins": {
            "relay": 4,
            "plug": 5,
            "led_ok": 6,
            "led_fault": 7,
            "buzzer": 9,
            "maintenance": 0,
        },
        "strapping_ok": {0: "the BOOT button: read after boot, pressed = maintenance"},
    },
    "olimex-esp32-poe": {
        "title": "Olimex ESP32-POE (ESP32-WROOM-32, LAN8720 Ethernet with PoE)",
        "chip": "esp32",
        "psram": False,
        # UEXT connector: TXD GPIO4, RXD GPIO36 (input-only, fine for RX), SDA GPIO13, SCL GPIO16.
        "rs485": {"uart": 1, "tx": 4, "rx": 36, "de": 33},
        # PN532 on I2C and the display share the UEXT I2C bus (addresses 0x24 and 0x3C). No SPI
        # reader wiring: the only outputs left free are strapping pins (GPIO0, 2, 5, 15).
        "nfc": {"bus": "i2c", "i2c": 0, "sda": 13, "scl": 16, "addr": 0x24},
        "display": {"bus": "i2c", "i2c": 0, "sda": 13, "scl": 16, "addr": 0x3C},
        # LAN8720 RMII: fixed data pins, MDC/MDIO, 50 MHz clock out on GPIO17, PHY power on GPIO12.
        "eth": {
            "phy": "LAN8720",
            "phy_addr": 0,
            "mdc": 23,
            "mdio": 18,
            "power": 12,
            "ref_clk": 17,
            "rmii": (19, 21, 22, 25, 26, 27),
        },
        "pins": {
            "relay": 32,
            "plug": 39,
            "led_ok": 14,
            "led_fault": None,
            "buzzer": None,
            "maintenance": 34,  # BUT1
        },
        "strapping_ok": {12: "PHY power enable: pulled low on the board, so the flash stays at 3.3 V"},
    },
}

# Roles the firmware asks the board for, and how each is driven.
ROLE_DIRECTION = {
    "relay": "out",
    "plug": "in",
    "led_ok": "out",
    "led_fault": "out",
    "buzzer": "out",
    "maintenance": "in",
    "rs485_de": "out",
}
REQUIRED_ROLES = ("relay",)
