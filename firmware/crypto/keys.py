# The device key pair. The private scalar lives in one small file (32 bytes, big-endian) that
# nothing publishes: no topic, log or tool reads it; only its public half is exported, as
# SubjectPublicKeyInfo DER in a sibling ".pub" file and through Key.public_spki_der().
# A key file that exists but is malformed is an error, never silently replaced: the backend has
# pinned the old public key, and a new one would orphan every record signed before.
# A new key is drawn only once the board says its random source is truly random (hal/entropy.py:
# on the ESP32, with the radio on), or not at all: a guessable key is worse than none.
import binascii
import os

from crypto import der, ecdsa, jws

_KEY_BYTES = 32


class DeviceKeyError(ValueError):
    pass


class Key:
    def __init__(self, priv):
        if not 0 < priv < ecdsa.p256.N:
            raise DeviceKeyError("private key out of range")
        self._priv = priv
        self.public = ecdsa.public_point(priv)  # affine (x, y)
        self._spki = None

    def sign(self, msg):
        """(r, s) over SHA-256(msg), RFC 6979 nonce."""
        return ecdsa.sign(self._priv, msg)

    def sign_digest(self, h):
        """(r, s) for a 32-byte SHA-256 digest h computed by the caller (e.g. while writing)."""
        return ecdsa.sign_digest(self._priv, h)

    def sign_raw(self, msg):
        """64-byte r||s (JWS ES256 form)."""
        r, s = ecdsa.sign(self._priv, msg)
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")

    def sign_der(self, msg):
        """DER ECDSA-Sig-Value (OCMF form)."""
        return der.encode_signature(*ecdsa.sign(self._priv, msg))

    def jws(self, payload, kid):
        """Compact JWS bytes of payload (signing input hashed while it is encoded)."""
        return jws.sign(self._priv, payload, kid)

    def write_jws(self, w, payload, kid):
        """Append the compact JWS of payload to the canon.Writer w (no copy of it is made)."""
        jws.write(w, payload, jws.header(kid), self.sign_digest)

    def public_spki_der(self):
        if self._spki is None:
            self._spki = der.spki(self.public)
        return self._spki

    def public_pem(self):
        return der.pem(self.public_spki_der())

    def public_hex(self):
        """SPKI DER as lower-case hex (the form carried in the status message and config)."""
        return binascii.hexlify(self.public_spki_der()).decode()


def _exists(path):
    try:
        os.stat(path)
        return True
    except OSError:
        return False


def _makedirs(path):
    """Create the folders above the file path (LittleFS has no makedirs)."""
    i = path.find("/", 1)
    while i > 0:
        if not _exists(path[:i]):
            os.mkdir(path[:i])
        i = path.find("/", i + 1)


def _write_atomic(path, data):
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.rename(tmp, path)


def load(path):
    """The Key stored at path; DeviceKeyError if it is missing or malformed."""
    try:
        with open(path, "rb") as f:
            data = f.read(_KEY_BYTES + 1)
    except OSError:
        raise DeviceKeyError("no device key at " + path)
    if len(data) != _KEY_BYTES:
        raise DeviceKeyError("device key file %s is %d bytes, expected 32" % (path, len(data)))
    key = Key(int.from_bytes(data, "big"))
    pub = path + ".pub"
    if not _exists(pub):  # e.g. power cut between the two writes of create()
        _write_atomic(pub, key.public_spki_der())
    return key


def create(path, entropy_ms=None):
    """A new key pair from os.urandom, written to path (and path + ".pub"); refuses to overwrite.
    Waits up to entropy_ms (default 10 s) for a true random source (hal/entropy.py), else
    DeviceKeyError."""
    if _exists(path):
        raise DeviceKeyError("device key exists at " + path + "; refusing to replace it")
    _makedirs(path)
    from hal import entropy  # once in a device's life: not kept in RAM by every boot

    try:
        done = entropy.wait(entropy_ms)
    except OSError as exc:  # no good source, or the board failed to start one
        raise DeviceKeyError("no device key made: %s" % exc)
    try:
        priv, _ = ecdsa.keygen()
    finally:
        if done is not None:
            done()
    key = Key(priv)
    _write_atomic(path, priv.to_bytes(_KEY_BYTES, "big"))
    _write_atomic(path + ".pub", key.public_spki_der())
    return key


def load_or_create(path, entropy_ms=None):
    """The device key: loaded when present, created on first boot (create's entropy_ms)."""
    if _exists(path):
        return load(path)
    return create(path, entropy_ms)
