"""The MNIST digit service (see docs/design.md for its layout)."""

import tomllib
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

PACKAGE = "mnist-normalization-serving"


def _version() -> str:
    """The package's version: installed metadata, else the pyproject.toml beside the code
    (the container installs the dependencies and copies the code, without installing it)."""
    try:
        return version(PACKAGE)
    except PackageNotFoundError:
        pyproject = Path(__file__).resolve().parent.parent / "pyproject.toml"
        try:
            return tomllib.loads(pyproject.read_text())["project"]["version"]
        except (OSError, KeyError, tomllib.TOMLDecodeError):
            return "0+unknown"


__version__ = _version()
