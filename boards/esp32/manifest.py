# The frozen firmware image: how the firmware ships to ESP32 boards (docs/flashing.md, "The frozen
# image"). Build it with
#
#   python tools/flash.py build-image --micropython PATH/TO/micropython --board esp32-devkitc
#
# which runs MicroPython's own build in that checkout (ESP-IDF exported in the shell):
#
#   make -C ports/esp32 BOARD=ESP32_GENERIC FROZEN_MANIFEST=/path/to/repo/boards/esp32/manifest.py
#   (BOARD=ESP32_GENERIC_S3 for the ESP32-S3-DevKitC-1; the Olimex ESP32-POE is ESP32_GENERIC)
#
# Frozen bytecode runs from flash and takes no RAM for code. Relative paths below are resolved
# from this file's folder. main.py is not frozen (MicroPython runs it as a file): on a board with
# this image `tools/flash.py deploy` copies main.py, board.txt and the config only, and removes
# firmware .py/.mpy files left on the filesystem, which come first on sys.path and would shadow the
# frozen modules (even an empty folder /app hides the frozen app package). `deploy --dev` copies
# the firmware as .mpy files over the image on purpose (development, boards with PSRAM).

include("$(PORT_DIR)/boards/manifest.py")  # the port's own frozen modules (asyncio, ...)
require("umqtt.simple")  # micropython-lib: the uplink's MQTT client

# Every firmware package (host_tests/flash checks this list against firmware/).
for _pkg in ("app", "billing", "crypto", "display", "hal", "journal", "meter", "nfc", "uplink"):
    package(_pkg, base_path="../../firmware", opt=3)

# The board layer: one image serves every ESP32 board; /board.txt names the board at run time.
for _mod in ("board.py", "board_defs.py", "board_chips.py", "pincheck.py"):
    module(_mod, base_path=".", opt=3)
