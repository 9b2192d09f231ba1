"""Dev-only helpers shared by the tests and the benchmarks: running the service, building
requests, generating client-like pictures. Not part of the installed product (the package
lists only `training`, `service` and `mnist_shared`); importable from the repository root,
where `make test` and `make bench` run."""

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
