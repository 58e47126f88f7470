# A downlink document too large for the receive buffer, written to flash as its bytes arrive
# (conn.py hands each piece over) and verified from there in 256-byte reads: a tariff or an
# authorization-list part of up to uplink.max_doc_bytes never sits whole in RAM (issue #16:
# the 8.7 KB receive buffer was the largest single block the charger kept).
import os

from app import log


class Spool:
    """Sink for one PUBLISH payload of `size` bytes: write(mv) pieces, then end() -> complete.

    A flash error while writing is kept, not raised (the connection goes on): the document is
    then reported as not stored. verify(pub) checks the JWS from flash and returns the
    decoded payload as an open file for json.load; discard() removes both files.
    """

    def __init__(self, path, size, done=None):
        self.path = path
        self.size = size
        self.done = done  # f(spool) once complete
        self.got = 0
        self.error = None
        self._f = open(path, "wb")  # OSError: the caller reads the payload past instead

    def __len__(self):
        return self.size

    def write(self, mv):
        self.got += len(mv)  # bytes that went by, kept on flash or not
        f = self._f
        if f is None:
            return
        try:
            f.write(mv)
        except OSError as exc:
            self.error = exc
            self._close()

    def end(self):
        """Every byte went by (True: done(spool) is called; spool.error says whether flash kept
        them), or the connection broke first (False: the spool is discarded)."""
        self._close()
        if self.got == self.size:
            if self.done is not None:
                self.done(self)
            return True
        self.discard()
        return False

    def _close(self):
        f = self._f
        self._f = None
        if f is not None:
            try:
                f.close()
            except OSError as exc:
                self.error = self.error or exc

    def verify(self, pub):
        from crypto import jws

        out = self.path + ".json"
        with open(self.path, "rb") as src:
            with open(out, "wb") as dst:
                jws.verify_stream(src, pub, dst)
        return open(out)

    def discard(self):
        self._close()
        for p in (self.path, self.path + ".json"):
            try:
                os.remove(p)
            except OSError:
                pass

    def __repr__(self):
        return "<spool %s %d/%d>" % (self.path, self.got, self.size)


def open_spool(path, size, done, room=None):
    """A Spool, or None when flash cannot take it, or only by eating into the journal's reserve
    (room(need) false): logged, and the document is then reported."""
    if room is not None and not room(2 * size):  # the JWS and its decoded payload, side by side
        log.warn("down", "no room to spool %d bytes (the journal's reserve is kept)" % size)
        return None
    try:
        return Spool(path, size, done)
    except OSError as exc:
        log.warn("down", "cannot spool %d bytes to %s: %s" % (size, path, exc))
        return None


def clean(state_dir):
    """Remove spooled documents a reboot left behind (down0.jws, down1.jws.json, ...)."""
    for i in (0, 1):
        for p in ("%s/down%d.jws" % (state_dir, i), "%s/down%d.jws.json" % (state_dir, i)):
            try:
                os.remove(p)
            except OSError:
                pass
