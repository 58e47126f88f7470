"""Install the MicroPython libraries that the ESP32 firmware has frozen in but the unix port lacks.

PyPI's `micropython-umqtt.simple` sdist has no setup.py, so pip cannot install it as a package.
We resolve it from the same package index pip uses, check the pinned sha256, and unpack the
MicroPython sources into a host library folder that goes on MICROPYPATH.
Nothing third-party is committed to the repository.
"""
from __future__ import annotations

import argparse
import hashlib
import io
import re
import sys
import tarfile
import urllib.request
from pathlib import Path

INDEX = "https://pypi.org/simple/"

# name, version, sha256 of the sdist, files to take (path inside the sdist -> path under the lib dir)
PACKAGES = [
    (
        "micropython-umqtt.simple",
        "1.3.4",
        "b6a2520239e3992c63a7de9370ee9b3d9d27819a90359c521f1c0f7ccab8d12f",
        {"umqtt/simple.py": "umqtt/simple.py"},
    ),
]


def _sdist_url(name: str, version: str) -> str:
    project = re.sub(r"[-_.]+", "-", name).lower()
    html = urllib.request.urlopen(INDEX + project + "/", timeout=60).read().decode()
    filename = f"{name}-{version}.tar.gz"
    for href in re.findall(r'href="([^"]+)"', html):
        if href.split("#")[0].endswith("/" + filename):
            return href.split("#")[0]
    raise SystemExit(f"hostlibs: {filename} not found in the package index")


def install(lib_dir: Path) -> None:
    for name, version, sha256, files in PACKAGES:
        stamp = lib_dir / f".{name}-{version}"
        if stamp.exists():
            continue
        data = urllib.request.urlopen(_sdist_url(name, version), timeout=60).read()
        got = hashlib.sha256(data).hexdigest()
        if got != sha256:
            raise SystemExit(f"hostlibs: {name} {version}: sha256 {got} does not match the pinned {sha256}")
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            members = {m.name.split("/", 1)[1]: m for m in tar.getmembers() if "/" in m.name}
            for src, dst in files.items():
                member = members.get(src)
                if member is None:
                    raise SystemExit(f"hostlibs: {name} {version} has no {src}")
                target = lib_dir / dst
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(tar.extractfile(member).read())
        stamp.write_text(sha256 + "\n")
        print(f"hostlibs: installed {name} {version} into {lib_dir}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lib", type=Path, required=True, help="host MicroPython library folder")
    args = parser.parse_args(argv)
    args.lib.mkdir(parents=True, exist_ok=True)
    install(args.lib)
    return 0


if __name__ == "__main__":
    sys.exit(main())
