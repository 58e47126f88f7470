# Freeze the charger firmware into a custom MicroPython build for the ESP32 (docs/flashing.md,
# "When to freeze"). From a MicroPython checkout:
#
#   cd ports/esp32
#   make BOARD=ESP32_GENERIC FROZEN_MANIFEST=/path/to/repo/boards/esp32/manifest.py
#   (BOARD=ESP32_GENERIC_S3 for the ESP32-S3-DevKitC-1; the Olimex ESP32-POE is ESP32_GENERIC)
#
# Frozen bytecode runs from flash and takes no RAM for code. Relative paths below are resolved
# from this file's folder. main.py is not frozen: `tools/flash.py deploy --frozen` copies it,
# config.json and board.txt only. A .py/.mpy on the filesystem shadows a frozen module of the
# same name (the filesystem comes first on sys.path): that is how a hotfix is tried on one board.

include("$(PORT_DIR)/boards/manifest.py")  # the port's own frozen modules (asyncio, ...)
require("umqtt.simple")  # micropython-lib: the uplink's MQTT client

# Every firmware package (host_tests/flash checks this list against firmware/).
for _pkg in ("app", "billing", "crypto", "hal", "journal", "meter", "nfc", "uplink"):
    package(_pkg, base_path="../../firmware", opt=3)

# The board layer: one image serves every ESP32 board; /board.txt names the board at run time.
for _mod in ("board.py", "board_defs.py", "board_chips.py", "pincheck.py"):
    module(_mod, base_path=".", opt=3)
