"""The PN532 emulator checked against an independent host driver (adafruit-circuitpython-pn532) on
each of its interfaces: HSU over pyserial on a pty, I2C and SPI through fakes of CircuitPython's
busio.I2C / busio.SPI / digitalio.DigitalInOut that call the emulator's bus side directly."""
from __future__ import annotations

import errno

import pytest
import serial

from host_tests.nfc.scenario import UID4, UID7, UID10
from sim.pn532_emu import Pn532Emulator, info_frame

adafruit_uart = pytest.importorskip("adafruit_pn532.uart")


class FakeI2C:
    """busio.I2C as adafruit_bus_device.I2CDevice uses it: a NAK'd address is an OSError, as on a board."""

    def __init__(self, emu: Pn532Emulator) -> None:
        self.emu = emu

    def try_lock(self) -> bool:
        return True

    def unlock(self) -> None:
        pass

    def writeto(self, address: int, buffer, *, start: int = 0, end: int | None = None) -> None:
        if not self.emu.i2c_write(address, bytes(buffer[start:end])):
            raise OSError(errno.ENODEV, "no ACK")

    def readfrom_into(self, address: int, buffer, *, start: int = 0, end: int | None = None) -> None:
        end = len(buffer) if end is None else end
        data = self.emu.i2c_read(address, end - start)
        if data is None:
            raise OSError(errno.ENODEV, "no ACK")
        buffer[start:end] = data


class FakeSPI:
    """busio.SPI as adafruit_bus_device.SPIDevice uses it (most significant bit first, as busio shifts)."""

    def __init__(self, emu: Pn532Emulator) -> None:
        self.emu = emu
        self.modes: set[tuple[int, int]] = set()

    def try_lock(self) -> bool:
        return True

    def unlock(self) -> None:
        pass

    def configure(self, *, baudrate: int = 100000, polarity: int = 0, phase: int = 0, bits: int = 8) -> None:
        self.modes.add((polarity, phase))

    def write(self, buffer, *, start: int = 0, end: int | None = None) -> None:
        self.emu.spi_transfer(bytes(buffer[start:end]))

    def readinto(self, buffer, *, start: int = 0, end: int | None = None, write_value: int = 0) -> None:
        end = len(buffer) if end is None else end
        buffer[start:end] = self.emu.spi_transfer(bytes([write_value]) * (end - start))

    def write_readinto(self, out_buffer, in_buffer, *, out_start: int = 0, out_end: int | None = None,
                       in_start: int = 0, in_end: int | None = None) -> None:
        got = self.emu.spi_transfer(bytes(out_buffer[out_start:out_end]))
        in_end = in_start + len(got) if in_end is None else in_end
        in_buffer[in_start:in_end] = got


class FakeChipSelect:
    """digitalio.DigitalInOut as the chip-select pin: low selects the PN532."""

    def __init__(self, emu: Pn532Emulator) -> None:
        self.emu = emu
        self._value = True

    def switch_to_output(self, value: bool = False, drive_mode=None) -> None:
        self.value = value

    @property
    def value(self) -> bool:
        return self._value

    @value.setter
    def value(self, level: bool) -> None:
        if bool(level) != self._value:
            self._value = bool(level)
            self.emu.spi_select(not self._value)


@pytest.fixture(params=["hsu", "i2c", "spi"])
def adafruit(request):
    bus = request.param
    with Pn532Emulator(bus=bus) as emu:
        if bus == "i2c":
            from adafruit_pn532.i2c import PN532_I2C

            yield emu, PN532_I2C(FakeI2C(emu))  # probes the address, wakes it, reads the firmware version
            return
        if bus == "spi":
            from adafruit_pn532.spi import PN532_SPI

            spi = FakeSPI(emu)
            yield emu, PN532_SPI(spi, FakeChipSelect(emu))
            assert spi.modes == {(0, 0)}  # the PN532 speaks SPI mode 0 only
            return
        port = serial.Serial(emu.serve_pty(), baudrate=115200, timeout=0.1)
        try:
            pn532 = adafruit_uart.PN532_UART(port)  # wakes it and reads the firmware version
            yield emu, pn532
        finally:
            port.close()


def test_firmware_version_and_sam(adafruit):
    emu, pn532 = adafruit
    assert pn532.firmware_version == (0x32, 0x01, 0x06, 0x07)
    assert emu.stats.commands[0x14] >= 1  # SAMConfiguration after the 0x55 wake-up


@pytest.mark.parametrize("uid", [UID4, UID7], ids=["4-byte", "7-byte"])
def test_reads_the_same_uid(adafruit, uid):
    emu, pn532 = adafruit
    emu.present(uid)
    assert bytes(pn532.read_passive_target(timeout=0.5)) == uid


def test_ten_byte_uid_is_framed_right(adafruit):
    emu, pn532 = adafruit
    emu.present(UID10)
    # adafruit's driver stops at 7-byte UIDs; it parses our frame far enough to see the length
    with pytest.raises(RuntimeError, match="unexpectedly long UID"):
        pn532.read_passive_target(timeout=0.5)


def test_no_card_waits_then_card_arrives(adafruit):
    emu, pn532 = adafruit
    # Power-on MaxRetries is 0xFF: the PN532 keeps listing until a card shows up.
    assert pn532.read_passive_target(timeout=0.3) is None
    assert pn532.listen_for_passive_target(timeout=0.3)
    emu.present(UID7)
    assert bytes(pn532.get_passive_target(timeout=0.5)) == UID7


def test_remove_then_other_card(adafruit):
    emu, pn532 = adafruit
    emu.present(UID4)
    assert bytes(pn532.read_passive_target(timeout=0.5)) == UID4
    emu.remove()
    assert pn532.read_passive_target(timeout=0.2) is None
    emu.present(UID7)
    assert bytes(pn532.read_passive_target(timeout=0.5)) == UID7


def test_info_frame_layout():
    # UM0701-02 6.2.1.1: GetFirmwareVersion answer of a PN532 v1.6
    assert info_frame(bytes([0x03, 0x32, 0x01, 0x06, 0x07])) == bytes.fromhex("0000ff06fad50332010607e800")


def test_i2c_address_is_0x24_and_nobody_else_answers():
    from adafruit_pn532.i2c import PN532_I2C

    with Pn532Emulator(bus="i2c") as emu:
        with pytest.raises(ValueError, match="No I2C device at address"):
            PN532_I2C(FakeI2C(emu), address=0x25)
        assert emu.i2c_read(0x24, 1) == b"\x00"  # 0x48/0x49 on the wire: 0x24 with the R/W bit


def test_i2c_status_byte_comes_before_the_frame_and_a_status_read_keeps_it():
    with Pn532Emulator(bus="i2c") as emu:
        assert emu.i2c_write(0x24, bytes.fromhex("0000ff02fed4022a00"))  # GetFirmwareVersion
        assert emu.i2c_read(0x24, 1) == b"\x01"  # RDY
        assert emu.i2c_read(0x24, 1) == b"\x01"  # polling the status takes nothing
        assert emu.i2c_read(0x24, 7) == b"\x01" + bytes.fromhex("0000ff00ff00")  # status + ACK
        answer = emu.i2c_read(0x24, 1 + 13 + 3)
        assert answer[0] == 0x01 and answer[1:14] == info_frame(bytes([0x03, 0x32, 0x01, 0x06, 0x07]))
        assert answer[14:] == bytes(3)  # read past the frame
        assert emu.i2c_read(0x24, 2) == b"\x00\x00"  # nothing waits: not ready


def test_spi_operation_bytes_and_lsb_first_bit_order():
    def rev(data: bytes) -> bytes:  # what an MSB-first controller clocks for LSB-first bytes
        return bytes(int(f"{b:08b}"[::-1], 2) for b in data)

    with Pn532Emulator(bus="spi") as emu:
        emu.spi_select(True)
        emu.spi_transfer(rev(b"\x01" + bytes.fromhex("0000ff02fed4022a00")))  # DW + GetFirmwareVersion
        emu.spi_select(False)
        assert rev(b"\x01") == b"\x80"
        emu.spi_select(True)
        assert rev(emu.spi_transfer(rev(b"\x02\x00")))[1] == 0x01  # SR: ready
        emu.spi_select(False)
        emu.spi_select(True)
        assert rev(emu.spi_transfer(rev(b"\x03" + bytes(6))))[1:] == bytes.fromhex("0000ff00ff00")  # DR: ACK
        emu.spi_select(False)
        emu.spi_select(True)
        got = rev(emu.spi_transfer(rev(b"\x03" + bytes(13))))[1:]
        emu.spi_select(False)
        assert got == info_frame(bytes([0x03, 0x32, 0x01, 0x06, 0x07]))
        emu.spi_select(True)
        assert rev(emu.spi_transfer(rev(b"\x02\x00")))[1] == 0x00  # nothing left: not ready
        emu.spi_select(False)


def test_packet_buses_refuse_stream_faults():
    with Pn532Emulator(bus="spi") as emu:
        with pytest.raises(ValueError, match="unknown fault"):
            emu.inject("split")
        with pytest.raises(ValueError, match="unknown fault"):
            emu.plan([(UID4, "noise")])
        emu.inject("bad_dcs")
