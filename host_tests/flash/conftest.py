"""Fixtures: a board emulator on a pty (tools/board_emulator.py) and a snapshot of the firmware to deploy."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tools import flash
from tools.board_emulator import BoardEmulator, frozen_image

REPO = Path(__file__).resolve().parents[2]
LIB_DIR = REPO / ".venv" / "mplib"
GOOD_CONFIG = {"device_id": "cp-0001", "meter": {"url": "tcp://127.0.0.1:1502", "model": "sdm630"},
               "nfc": {"url": "tcp://127.0.0.1:1503"}, "site_secret": "00112233445566778899aabbccddeeff"}


@pytest.fixture(scope="session")
def source(tmp_path_factory) -> Path:
    """A frozen copy of firmware/ and boards/: deploys in these tests see no concurrent edits."""
    root = tmp_path_factory.mktemp("checkout")
    for name in ("firmware", "boards"):
        shutil.copytree(REPO / name, root / name, ignore=shutil.ignore_patterns("__pycache__", "*.mpy"))
    return root


@pytest.fixture
def emulator(tmp_path):
    with BoardEmulator(tmp_path / "flash", run_main=False, env={"EVC_ROOT": "/evc"}) as emu:
        yield emu


@pytest.fixture(scope="session")
def frozen_dir(source, tmp_path_factory) -> Path:
    """What boards/host/manifest.py freezes (the firmware and the host board layer), laid out for
    BoardEmulator(frozen=...): a board running a frozen firmware image."""
    return frozen_image(source / "boards" / "host" / "manifest.py", tmp_path_factory.mktemp("image"))


@pytest.fixture
def frozen_emulator(tmp_path, frozen_dir):
    with BoardEmulator(tmp_path / "flash", run_main=False, env={"EVC_ROOT": "/evc"}, frozen=frozen_dir) as emu:
        yield emu


@pytest.fixture
def config_file(tmp_path) -> Path:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(GOOD_CONFIG))
    return path


def deploy(emu: BoardEmulator, source: Path, config: Path | None = None, **kw) -> dict:
    return flash.deploy(emu.port, "host", config, lib_dir=LIB_DIR, source=source, **kw)


@pytest.fixture
def deployed(emulator, source, config_file) -> BoardEmulator:
    deploy(emulator, source, config_file)
    return emulator


@pytest.fixture(scope="module")
def backend_key(tmp_path_factory):
    """A backend public key file (PEM) for provisioning tests."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    path = tmp_path_factory.mktemp("backend") / "backend.pub.pem"
    path.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                   serialization.PublicFormat.SubjectPublicKeyInfo))
    return path
