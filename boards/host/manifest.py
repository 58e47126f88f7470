# Freeze the firmware and the host board layer into the ESP32-geometry interpreter
# (`make esp32geom`, ../shared/esp32geom/build.sh): a 32-bit unix build whose heap grows the way
# the esp32 port's does, so heap figures measured on it are the device's. Frozen bytecode takes
# no GC heap for code, as on a board flashed with boards/esp32/manifest.py.

include("$(MPY_DIR)/extmod/asyncio")
require("umqtt.simple")

for _pkg in ("app", "billing", "crypto", "display", "hal", "journal", "meter", "nfc", "uplink"):
    package(_pkg, base_path="../../firmware", opt=3)

for _mod in ("board.py", "blockdev.py", "serial_posix.py", "tcp_bridge.py", "spi_bridge.py", "i2c_bridge.py", "hostlink.py",
             "display_files.py"):
    module(_mod, base_path=".", opt=3)
