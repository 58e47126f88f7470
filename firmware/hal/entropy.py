# Randomness good enough for the device key: made once (first boot, or flash.py provision), it
# signs every record of the device's life, so it must not come from a predictable generator.
#
# os.urandom is the port's generator. On the unix port it is the OS's: good at once. On the ESP32
# it is esp_random(), which ESP-IDF documents as truly random only while physical noise feeds it:
# the RF subsystem running (WiFi or Bluetooth started), or the SAR ADC source the bootloader
# enables while it runs and disables before the application starts (bootloader_random_enable,
# not reachable from MicroPython). Between the two, after boot and before the radio starts, its
# output is only pseudo-random (ESP-IDF, "Random Number Generation").
#
# So a key is made only after wait() says the source is good. What the board provides:
#   board.entropy_ready() -> bool   True when os.urandom is truly random now; it may switch a
#                                   source on (polled every _POLL_MS until the deadline)
#   board.entropy_done()            optional: switch off again what entropy_ready switched on
# A board without entropy_ready: on the ESP32 port esp32_radio_ready/esp32_radio_done below
# (boards/esp32/board.py should name them as its hooks); elsewhere (the unix port, the host
# board) the OS's generator is ready at once.
import sys
import time

from micropython import const

try:
    import board
except ImportError:  # a bare interpreter (a tool running firmware code without a board layer)
    board = None

_POLL_MS = const(100)
_DEADLINE_MS = const(10000)  # the ESP32's WLAN starts in well under a second


def wait(deadline_ms=None):
    """Block until os.urandom is truly random; returns done() (or None) to call once the random
    bytes are drawn. Raises OSError when no good source is there within deadline_ms."""
    ready = getattr(board, "entropy_ready", None)
    done = getattr(board, "entropy_done", None)
    if ready is None and sys.platform == "esp32":
        ready, done = esp32_radio_ready, esp32_radio_done
    deadline_ms = deadline_ms or _DEADLINE_MS
    start = time.ticks_ms()
    while ready is not None and not ready():
        if time.ticks_diff(time.ticks_ms(), start) >= deadline_ms:
            if done is not None:
                done()
            raise OSError("no true random source within %d ms (ESP32: the radio must run)" % deadline_ms)
        time.sleep_ms(_POLL_MS)
    return done


_started = None  # the WLAN interface esp32_radio_ready started, for esp32_radio_done


def esp32_radio_ready():
    """ESP32: True while the WLAN station runs (its RF feeds the RNG). Starts it when it is off: no
    connection is needed, only the radio (esp_wifi_start, ESP-IDF's "Enabling RF subsystem")."""
    global _started
    import network

    sta = network.WLAN(network.STA_IF)
    if sta.active():
        return True
    if _started is None:
        _started = sta
        sta.active(True)
    return sta.active()


def esp32_radio_done():
    """ESP32: stop the WLAN station again if esp32_radio_ready started it (an Ethernet board does
    not keep a radio on that nothing uses; hal/net.py starts it again on a WLAN board)."""
    global _started
    if _started is not None:
        _started.active(False)
        _started = None
