# SSD1306 128x64 OLED (Solomon Systech datasheet rev 1.1: command table 9, the initialisation
# flow of the application note), internal charge pump, module mounted the usual way up.
from display.oled import WIDTH, Oled

_INIT = bytes((
    0x00,  # control byte: commands
    0xAE,  # display off
    0xD5, 0x80,  # display clock: divide ratio 1, oscillator frequency 8 (reset value)
    0xA8, 0x3F,  # multiplex ratio 64
    0xD3, 0x00,  # display offset 0
    0x40,  # display start line 0
    0x8D, 0x14,  # charge pump on (the module has no external VCC)
    0x20, 0x00,  # horizontal addressing: a whole frame in one sweep
    0xA1,  # segment remap: column 127 drives SEG0
    0xC8,  # COM scan from COM63 to COM0 (with A1: the picture upright on common modules)
    0xDA, 0x12,  # COM pins: alternative configuration, no left/right remap (128x64 panels)
    0x81, 0xCF,  # contrast
    0xD9, 0xF1,  # pre-charge: phase 1 1 clock, phase 2 15 clocks (charge pump)
    0xDB, 0x30,  # VCOMH deselect level ~0.83 x VCC
    0xA4,  # show the RAM (not all pixels on)
    0xA6,  # normal: a 1 bit lights the pixel
    0x2E,  # no scrolling
    0xAF,  # display on
))


class Ssd1306(Oled):
    INIT = _INIT

    def show(self):
        # the window is the whole RAM: the pointer runs column by column, page by page
        self.command(0x21, 0, WIDTH - 1, 0x22, 0, 7)
        for page in range(8):
            self._send_page(page)
