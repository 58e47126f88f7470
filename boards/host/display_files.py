# The host's display frames as files, for tests, the docs and the simulator's --out DIR/display
# (sim/display.py turns them into PNG): one file per frame drawn, named by the host's wall clock
# in ms and a counter, "<ms>-<n>.vlsb" for a 128x64 OLED frame (a 4-byte header: width, height as
# u16 big-endian, then framebuf MONO_VLSB bytes as the chip receives them) or "<ms>-<n>.txt" for
# the text of a character LCD (its lines, each padded to the LCD's width).
import time


class FrameFiles:
    def __init__(self, folder):
        self.folder = folder
        self.count = 0
        try:
            import os

            os.mkdir(folder)
        except OSError:
            pass

    def _name(self, ext):
        self.count += 1
        return "%s/%013d-%05d.%s" % (self.folder, time.time_ns() // 1000000, self.count, ext)

    def graphic(self, buf, width, height):
        with open(self._name("vlsb"), "wb") as f:
            f.write(bytes((width >> 8, width & 0xFF, height >> 8, height & 0xFF)))
            f.write(buf)

    def text(self, lines, cols):
        with open(self._name("txt"), "w") as f:
            f.write("\n".join(("%-*s" % (cols, line))[:cols] for line in lines))
