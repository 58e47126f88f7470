"""The backend's P-256 key pair (signs downlink documents) and the site secret (card tokens).

Kept as files in one folder (default ./backend-keys, or --keys / EVC_BACKEND_KEYS; mode 700):
backend.key (PKCS#8 PEM, mode 600), backend.pub (hex SubjectPublicKeyInfo DER: the device config's
`backend_key`), site.secret (hex: the device config's `site_secret`, mode 600); backend/broker.py
keeps the broker users' password hashes there too (mode 600).
"""
from __future__ import annotations

import base64
import hmac
import hashlib
import json
import os
import secrets
from pathlib import Path

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from evc import verify

KID = "backend"


class KeyMaterialError(ValueError):
    """Missing or unreadable key material (clear message for the operator)."""


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def load_public_key(data: bytes) -> bytes:
    """A P-256 public key as PEM, DER or hex DER -> SubjectPublicKeyInfo DER (raises ValueError)."""
    try:
        text: bytes | str = data.decode("ascii").strip()  # PEM or hex
        if not text.startswith("-----BEGIN") and not all(c in "0123456789abcdefABCDEF" for c in text):
            text = data
    except UnicodeDecodeError:
        text = data  # DER
    key = verify.load_public_key(text)
    if not isinstance(key.curve, ec.SECP256R1):
        raise ValueError("not a P-256 (secp256r1) public key")
    return verify.spki_der(key)


def write_private(path: str | Path, data: bytes, mode: int = 0o600) -> None:
    """Write a file atomically (temporary file, fsync, rename) with exactly this mode, never wider:
    the mode is set on the temporary file before a byte of the secret is in it, whatever the umask,
    and an old file's wider mode does not survive (a plain O_TRUNC rewrite would keep it)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        if hasattr(os, "fchmod"):
            os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


class Keys:
    def __init__(self, folder: str | Path):
        self.folder = Path(folder)

    @staticmethod
    def make_folder(folder: str | Path) -> None:
        """Create a folder for secrets with mode 700 (an existing one is left as it is)."""
        Path(folder).mkdir(mode=0o700, parents=True, exist_ok=True)

    @property
    def key_file(self) -> Path:
        return self.folder / "backend.key"

    def init(self, force: bool = False, site_secret: str | None = None) -> None:
        if self.key_file.exists() and not force:
            raise KeyMaterialError(f"{self.key_file} exists; --force replaces it (devices must then get the new backend_key)")
        secret = site_secret or secrets.token_hex(32)
        try:
            if len(bytes.fromhex(secret)) < 16:
                raise ValueError
        except ValueError:
            raise KeyMaterialError("the site secret must be at least 16 bytes of hex") from None
        self.make_folder(self.folder)
        if os.name == "posix":
            os.chmod(self.folder, 0o700)  # the folder of the backend's secrets: only its owner lists it
        key = ec.generate_private_key(ec.SECP256R1())
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        write_private(self.key_file, pem)
        write_private(self.folder / "backend.pub", (verify.spki_der(key.public_key()).hex() + "\n").encode(), mode=0o644)
        write_private(self.secret_file, (secret + "\n").encode())

    @property
    def secret_file(self) -> Path:
        return self.folder / "site.secret"

    def private_key(self) -> ec.EllipticCurvePrivateKey:
        try:
            key = serialization.load_pem_private_key(self.key_file.read_bytes(), None)
        except (OSError, ValueError) as exc:
            raise KeyMaterialError(f"no backend key at {self.key_file} ({exc}); run `python -m backend keys init`") from None
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        return key

    def public_hex(self) -> str:
        return verify.spki_der(self.private_key().public_key()).hex()

    def site_secret(self) -> bytes:
        try:
            return bytes.fromhex(self.secret_file.read_text().strip())
        except (OSError, ValueError) as exc:
            raise KeyMaterialError(f"no site secret in {self.folder} ({exc}); run `python -m backend keys init`") from None


def card_token(secret: bytes, uid: bytes) -> str:
    """The blueprint's card token: first 16 bytes of HMAC-SHA256(site secret, UID), lower-case hex."""
    return hmac.new(secret, uid, hashlib.sha256).digest()[:16].hex()


def sign_document(key: ec.EllipticCurvePrivateKey, payload: dict) -> str:
    """JWS compact, ES256, kid "backend", deterministic nonce (RFC 6979), r||s signature."""
    header = b64url(json.dumps({"alg": "ES256", "kid": KID}, separators=(",", ":")).encode())
    body = b64url(json.dumps(payload, separators=(",", ":"), sort_keys=True).encode())
    der = key.sign(f"{header}.{body}".encode(), ec.ECDSA(hashes.SHA256(), deterministic_signing=True))
    r, s = decode_dss_signature(der)
    return f"{header}.{body}.{b64url(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"
