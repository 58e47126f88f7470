# A RAM-backed flash block device (the extended block protocol vfs.VfsLfs2 uses) that cuts the
# power at block write number k: that write and every one after it are lost, or that write is
# torn (only a prefix of it reaches the flash). Erases count as writes. It also counts what is
# written, for the journal benchmarks.
#
# After a cut the device stays dead: every write fails with EIO, so the old LittleFS instance
# can never touch the flash again (not even from a finaliser). reborn() gives a fresh, live
# device over the same memory, as a reboot would.
_IOCTL_BLOCK_COUNT = 4
_IOCTL_BLOCK_SIZE = 5
_IOCTL_BLOCK_ERASE = 6
_EIO = -5


class PowerCutDevice:
    def __init__(self, block_size=4096, block_count=64, cut_at=None, torn=False, mem=None, seed=1):
        self.block_size = block_size
        self.block_count = block_count
        self.mem = mem if mem is not None else bytearray(b"\xff" * (block_size * block_count))
        self._mv = memoryview(self.mem)
        self._erased = b"\xff" * block_size
        self.cut_at = cut_at  # 1-based number of the write that the power cut hits
        self.torn = torn
        self.dead = False
        self.writes = 0  # programs + erases
        self.programs = 0
        self.erases = 0
        self.bytes_programmed = 0
        self.bytes_read = 0
        self._rand = seed or 1

    def random(self, n):
        # xorshift32: deterministic tear positions (and test randomness), no `random` module needed.
        x = self._rand
        x ^= (x << 13) & 0xFFFFFFFF
        x ^= x >> 17
        x ^= (x << 5) & 0xFFFFFFFF
        self._rand = x
        return x % n

    def _power(self):
        # True when this write may go ahead; on the cut write, False (the caller may tear it).
        if self.dead:
            return False
        self.writes += 1
        if self.cut_at is not None and self.writes >= self.cut_at:
            self.dead = True
            return False
        return True

    def readblocks(self, block, buf, offset=0):
        if self.dead:  # powered off; also keeps finalisers of stale files from allocating
            return _EIO
        a = block * self.block_size + offset
        buf[:] = self._mv[a : a + len(buf)]
        self.bytes_read += len(buf)
        return 0

    def writeblocks(self, block, buf, offset=None):
        a = block * self.block_size + (offset or 0)
        was_dead = self.dead
        if not self._power():
            if self.torn and not was_dead:
                if offset is None:
                    self._mv[a : a + self.block_size] = self._erased
                n = self.random(len(buf))
                self._mv[a : a + n] = buf[:n]
            return _EIO
        if offset is None:  # whole-block write: erase implied
            self._mv[a : a + self.block_size] = self._erased
        self._mv[a : a + len(buf)] = buf
        self.programs += 1
        self.bytes_programmed += len(buf)
        return 0

    def ioctl(self, op, arg):
        if op == _IOCTL_BLOCK_COUNT:
            return self.block_count
        if op == _IOCTL_BLOCK_SIZE:
            return self.block_size
        if op == _IOCTL_BLOCK_ERASE:
            a = arg * self.block_size
            was_dead = self.dead
            if not self._power():
                if self.torn and not was_dead:
                    n = self.random(self.block_size)
                    self._mv[a : a + n] = self._erased[:n]
                return _EIO
            self._mv[a : a + self.block_size] = self._erased
            self.erases += 1
            return 0
        return 0

    def reborn(self, cut_at=None, torn=False):
        """The same flash after a reboot: a live device; this one stays dead."""
        self.dead = True
        return PowerCutDevice(self.block_size, self.block_count, cut_at, torn, self.mem, self._rand)

    def snapshot(self):
        return bytearray(self.mem)
