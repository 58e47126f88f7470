# A file-backed block device for LittleFS on the host (the extended block protocol with
# offsets, as vfs.VfsLfs2 uses it). Subclasses in tests cut the power at a chosen write.
# It counts program operations (writes) and block erases; with $EVC_FLASH_STATS naming a host
# file, the counts are also kept there ("writes erases", rewritten after each one) for
# bench/flashwrites.py to read while the device runs.
import os

_IOCTL_BLOCK_COUNT = 4
_IOCTL_BLOCK_SIZE = 5
_IOCTL_BLOCK_ERASE = 6
# An erase writes this 256-byte pattern block_size // 256 times: a block-sized pattern made at boot
# kept 4 KB of GC heap that a real board (its flash partition erases in hardware) never spends.
_ERASED = b"\xff" * 256


class FileBlockDevice:
    def __init__(self, path, block_size=4096, block_count=256):
        self.path = path
        self.block_size = block_size
        self.block_count = block_count
        size = block_size * block_count
        try:
            existing = os.stat(path)[6]
        except OSError:
            existing = -1
        if existing != size:
            with open(path, "wb") as f:
                chunk = b"\xff" * block_size
                for _ in range(block_count):
                    f.write(chunk)
        self._file = open(path, "r+b")
        if block_size % len(_ERASED):
            raise ValueError("block_size must be a multiple of %d" % len(_ERASED))
        self.writes = 0  # program operations (writeblocks calls)
        self.erases = 0
        stats = os.getenv("EVC_FLASH_STATS")
        self._stats = open(stats, "wb") if stats else None

    def _count(self):
        if self._stats is not None:
            try:
                self._stats.seek(0)
                self._stats.write(b"%d %d\n" % (self.writes, self.erases))  # counts only grow
                self._stats.flush()
            except (OSError, MemoryError):
                pass

    def readblocks(self, block, buf, offset=0):
        self._file.seek(block * self.block_size + offset)
        self._file.readinto(buf)

    def writeblocks(self, block, buf, offset=None):
        if offset is None:  # whole-block write: erase implied
            offset = 0
        self.writes += 1
        self._file.seek(block * self.block_size + offset)
        self._file.write(buf)
        self._file.flush()
        self._count()

    def ioctl(self, op, arg):
        if op == _IOCTL_BLOCK_COUNT:
            return self.block_count
        if op == _IOCTL_BLOCK_SIZE:
            return self.block_size
        if op == _IOCTL_BLOCK_ERASE:
            self._file.seek(arg * self.block_size)
            for _ in range(self.block_size // len(_ERASED)):
                self._file.write(_ERASED)
            self._file.flush()
            self.erases += 1
            self._count()
            return 0
        return 0

    def close(self):
        self._file.close()
        if self._stats is not None:
            self._stats.close()
