"""A stand-in for the Dockerfile's `python:3.11-slim` where no image registry is reachable: Debian
bookworm's own Python 3.11, installed with debootstrap from the machine's apt mirror and
imported into podman as `localhost/debian-python:3.11` (built once, kept by podman).

It differs from the official image only where the Dockerfile cannot tell: Python lives in
/usr/bin (linked from /usr/local/bin as there), and pip installs system-wide (Debian's
EXTERNALLY-MANAGED marker removed, as the official image has none).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

USERS_IMAGE = "python:3.11-slim"
STAND_IN_IMAGE = "localhost/debian-python:3.11"
_SUITE = "bookworm"
_DEFAULT_MIRROR = "http://deb.debian.org/debian"
_PACKAGES = "python3,python3-pip,python3-venv,ca-certificates"


class CannotBuild(RuntimeError):
    """This machine can build no stand-in; says what it lacks."""


def stand_in_python_image(podman_env: dict[str, str]) -> str:
    """The stand-in's name, importing it first if podman lacks it."""
    env = {**os.environ, **podman_env}
    exists = ["podman", "image", "exists", STAND_IN_IMAGE]
    if subprocess.run(exists, env=env, capture_output=True).returncode == 0:
        return STAND_IN_IMAGE
    if os.geteuid() != 0 or not shutil.which("debootstrap"):
        raise CannotBuild(
            f"{USERS_IMAGE} cannot be pulled (no registry reachable), and building the stand-in "
            f"{STAND_IN_IMAGE} needs root and debootstrap (Debian: apt-get install debootstrap)."
        )
    with tempfile.TemporaryDirectory(prefix="debian-python-") as scratch:
        rootfs = Path(scratch) / "rootfs"
        print(f"{USERS_IMAGE} cannot be pulled: building {STAND_IN_IMAGE} with debootstrap")
        debootstrap = ["debootstrap", "--variant=minbase", f"--include={_PACKAGES}"]
        subprocess.run(
            [*debootstrap, _SUITE, rootfs, mirror()], check=True, stdout=subprocess.DEVNULL
        )
        _make_like_the_official_image(rootfs)
        archive = subprocess.Popen(["tar", "-C", rootfs, "-c", "."], stdout=subprocess.PIPE)
        podman_import = ["podman", "import", "-q", "-", STAND_IN_IMAGE]
        subprocess.run(podman_import, stdin=archive.stdout, env=env, check=True)
        if archive.wait() != 0:
            raise RuntimeError(f"tar of {rootfs} exited with {archive.returncode}")
    return STAND_IN_IMAGE


def _make_like_the_official_image(rootfs: Path) -> None:
    (rootfs / "usr/lib/python3.11/EXTERNALLY-MANAGED").unlink(missing_ok=True)
    for name, target in (("python", "/usr/bin/python3"), ("pip", "/usr/bin/pip3")):
        (rootfs / "usr/local/bin" / name).symlink_to(target)
    for cache in ("var/cache/apt/archives", "var/lib/apt/lists"):
        for entry in (rootfs / cache).glob("*"):
            if entry.is_file():
                entry.unlink()


def mirror(sources: Path = Path("/etc/apt")) -> str:
    """The Debian mirror this machine's apt uses (deb822 `.sources` or `sources.list`)."""
    files = [*sorted(sources.glob("sources.list.d/*.sources")), sources / "sources.list"]
    for path in files:
        if not path.is_file():
            continue
        text = path.read_text()
        found = re.search(r"^URIs:\s*(\S+/debian)/?\s*$", text, re.MULTILINE) or re.search(
            rf"^deb\s+(?:\[[^]]*\]\s+)?(\S+/debian)/?\s+{_SUITE}\s", text, re.MULTILINE
        )
        if found:
            return found.group(1)
    return _DEFAULT_MIRROR
