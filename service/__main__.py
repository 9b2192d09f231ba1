"""`python -m service` / `mnist-serve`: start the API with uvicorn.

Flags override the MNIST_* environment variables (see `service.settings.Settings`).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Iterator
from types import FrameType
from typing import Any

from service.rest.http_limits import bounded_protocol, connection_limit
from service.runtime.cpus import available_cpus
from service.settings import Settings, env_table


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="mnist-serve",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--host", help="interface to listen on (MNIST_HOST)")
    parser.add_argument("--port", type=int, help="port to listen on (MNIST_PORT)")
    parser.add_argument("--models-dir", help="models directory (MNIST_MODELS_DIR)")
    parser.add_argument("--workers", type=int, help="uvicorn worker processes (MNIST_WORKERS)")
    parser.add_argument(
        "--print-env-table", action="store_true", help="print the settings as a Markdown table"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    import uvicorn
    from pydantic import ValidationError

    args = parse_args(argv)
    if args.print_env_table:
        print(env_table())
        return 0
    # Flags become MNIST_* variables so that worker processes (which build their own app from
    # the environment) see the same settings as this one.
    for flag in ("host", "port", "models_dir", "workers"):
        if getattr(args, flag) is not None:
            os.environ[f"MNIST_{flag.upper()}"] = str(getattr(args, flag))
    try:
        settings = Settings()
    except ValidationError as error:
        print(f"error: invalid settings:\n{error}", file=sys.stderr)
        return 2
    if not settings.models_dir.is_dir():
        print(
            f"error: models directory {settings.models_dir} does not exist; pass --models-dir "
            "or set MNIST_MODELS_DIR (train models with `make train`).",
            file=sys.stderr,
        )
        return 2
    # uvicorn re-raises SIGTERM after its graceful shutdown, with the handler it found at start:
    # make that a clean exit (status 0) rather than death by the signal (status 143).
    signal.signal(signal.SIGTERM, _exit_cleanly)
    workers = settings.workers or available_cpus()
    os.environ["MNIST_WORKERS"] = str(workers)  # what each worker's settings say, resolved
    with _shared_metrics(workers):
        uvicorn.run(
            "service.asgi:app",
            host=settings.host,
            port=settings.port,
            workers=workers,
            log_level=settings.log_level,
            timeout_graceful_shutdown=settings.shutdown_grace_s,
            log_config=_log_config(settings.log_level, workers),
            http=bounded_protocol(settings),
            limit_concurrency=connection_limit(),
        )
    return 0


def _log_config(level: str, workers: int) -> dict[str, Any]:
    """uvicorn's logging, with the service's own loggers (model loads and refusals, shutdown)
    written through the same handler; applied by uvicorn in every worker. With several, each
    line names its worker's process (each loads the models and logs it)."""
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    if workers > 1:
        config["formatters"]["default"]["fmt"] = "%(levelprefix)s [worker %(process)d] %(message)s"
    config["loggers"]["service"] = {
        "handlers": ["default"],
        "level": level.upper(),
        "propagate": False,
    }
    return config


def _exit_cleanly(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


@contextlib.contextmanager
def _shared_metrics(workers: int) -> Iterator[None]:
    """With several workers, a fresh directory where each writes its metrics (so a scrape sums
    them all), set before the workers start and removed when they are gone."""
    from service.metrics import MULTIPROCESS_DIR

    if workers == 1 or os.environ.get(MULTIPROCESS_DIR):
        yield
        return
    directory = tempfile.mkdtemp(prefix="mnist-metrics-")
    os.environ[MULTIPROCESS_DIR] = directory
    try:
        yield
    finally:
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
