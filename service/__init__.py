"""The MNIST digit service (see docs/design.md for its layout)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("mnist-normalization-serving")  # pyproject.toml's, read once
except PackageNotFoundError:  # run from a checkout that was never installed
    __version__ = "0+unknown"
