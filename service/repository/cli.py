"""`mnist-models`: which version of each variant requests naming none get, and changing it.

    mnist-models status [VARIANT]            each version, its figures, the default and why
    mnist-models promote VARIANT VERSION     serve VERSION by default (a candidate, say)
    mnist-models rollback VARIANT [VERSION]  back to the previous default (or to VERSION)
    mnist-models gate VARIANT                forget the choice: the promotion gate decides

The choice is written atomically to `models/<variant>/serving.json`; a running service reads
it at its next poll (MNIST_MODEL_POLL_S), every worker and replica alike, and it survives
restarts. Reads MNIST_MODELS_DIR, MNIST_PROMOTION and MNIST_PROMOTION_TOLERANCE as the service
does (`--models-dir` overrides the first).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pydantic import ValidationError

from mnist_shared.manifest import list_versions
from mnist_shared.promotion import DefaultVersion, choose_among
from mnist_shared.serving_choice import SERVING_FILE, clear_choice, read_choice, write_choice
from service.repository.variants import discover_variants
from service.settings import Settings


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = Settings(**({"models_dir": args.models_dir} if args.models_dir else {}))
    except ValidationError as error:
        print(f"error: invalid settings:\n{error}", file=sys.stderr)
        return 2
    variants = discover_variants(settings)
    names = [args.variant] if getattr(args, "variant", None) else variants
    unknown = [name for name in names if name not in variants]
    if unknown:
        print(f"error: no variant {unknown[0]!r} under {settings.models_dir} (there: "
              f"{', '.join(variants) or 'none'})", file=sys.stderr)  # fmt: skip
        return 2
    try:
        return _COMMANDS[args.command](settings, names, args)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


def _default(settings: Settings, variant: str) -> DefaultVersion:
    variant_dir = settings.models_dir / variant
    return choose_among(
        variant_dir,
        list_versions(variant_dir),
        always=settings.promotion == "always",
        tolerance_points=settings.promotion_tolerance,
    )


def _status(settings: Settings, names: list[str], args: argparse.Namespace) -> int:
    for variant in names:
        chosen = _default(settings, variant)
        how = (
            f"{chosen.choice.action} at {chosen.choice.at}" if chosen.choice else settings.promotion
        )
        print(f"{variant}: default version {chosen.version} ({how})")
        if chosen.note:
            print(f"  note: {chosen.note}")
        for verdict in chosen.verdicts.values():
            print(f"  {verdict.summary()}")
    return 0


def _promote(settings: Settings, names: list[str], args: argparse.Namespace) -> int:
    (variant,) = names
    return _choose(settings, variant, args.version, "promote")


def _rollback(settings: Settings, names: list[str], args: argparse.Namespace) -> int:
    (variant,) = names
    version = args.version
    if version is None:
        choice = read_choice(settings.models_dir / variant)
        if choice is None or choice.previous is None:
            raise ValueError(
                f"no earlier default of {variant!r} is recorded (nothing was promoted with "
                "mnist-models or the API): name the version, mnist-models rollback "
                f"{variant} VERSION"
            )
        version = choice.previous
    return _choose(settings, variant, version, "rollback")


def _choose(settings: Settings, variant: str, version: int, action: str) -> int:
    variant_dir = settings.models_dir / variant
    previous = _default(settings, variant).version
    write_choice(variant_dir, version, previous, action)
    print(f"{variant}: {action} to version {version} (was {previous}); written to "
          f"{variant_dir / SERVING_FILE}, read by a running service at its next poll")  # fmt: skip
    return 0


def _gate(settings: Settings, names: list[str], args: argparse.Namespace) -> int:
    (variant,) = names
    removed = clear_choice(settings.models_dir / variant)
    chosen = _default(settings, variant)
    what = "choice removed" if removed else "no choice was recorded"
    print(f"{variant}: {what}; the promotion gate serves version {chosen.version}")
    return 0


_COMMANDS = {"status": _status, "promote": _promote, "rollback": _rollback, "gate": _gate}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        "mnist-models", description=__doc__.split("\n\n")[0] if __doc__ else None
    )
    parser.add_argument("--models-dir", type=Path, help="default: MNIST_MODELS_DIR, else models")
    commands = parser.add_subparsers(dest="command", required=True)
    status = commands.add_parser("status", help="each variant's default version and why")
    status.add_argument("variant", nargs="?")
    promote = commands.add_parser("promote", help="serve VERSION by default")
    promote.add_argument("variant")
    promote.add_argument("version", type=int)
    rollback = commands.add_parser("rollback", help="back to the previous default")
    rollback.add_argument("variant")
    rollback.add_argument("version", type=int, nargs="?")
    gate = commands.add_parser("gate", help="forget the choice: the promotion gate decides")
    gate.add_argument("variant")
    return parser


if __name__ == "__main__":
    sys.exit(main())
