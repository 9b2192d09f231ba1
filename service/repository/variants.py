"""What the registry holds per variant: the versions serving (each with its batchers), those
loading and those refused, and the state of any version on disk."""

from __future__ import annotations

import asyncio
import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mnist_shared.manifest import FP32, Manifest, list_versions
from mnist_shared.promotion import DefaultVersion, Verdict
from service.errors import NotFound
from service.runtime.backends import installed_backends
from service.runtime.batching import MicroBatcher
from service.runtime.model_loading import Fingerprint
from service.settings import Settings

SERVING, LOADING, AVAILABLE, FAILED = "serving", "loading", "available", "failed"
CANDIDATE = "candidate"  # loaded, reachable with version=N, not what requests naming none get
_RETIRE_POLL_S = 0.05


@dataclass(eq=False)  # hashable by identity: the registry keeps a set of retiring ones
class LoadedModel:
    variant: str
    version_dir: Path
    manifest: Manifest
    # By (backend, precision): ("onnx", "fp32"), ("onnx", "int8"), ("savedmodel", "fp32").
    batchers: dict[tuple[str, str], MicroBatcher] = field(default_factory=dict)
    users: int = 0  # requests using this version now; it retires when they are done
    sample_accuracy: float | None = None  # fp32, on the gate sample (`promotion`), if any

    @property
    def version(self) -> int:
        return self.manifest.version

    @functools.cached_property  # once: a loaded version's manifest does not change
    def precisions(self) -> list[str]:
        """fp32 and each twin that passed its gate, the fastest first (what a request naming
        none runs on the onnx backend, unless MNIST_DEFAULT_PRECISION=fp32)."""
        fastest = self.manifest.fastest_precision()
        return [fastest, *(name for name in self.manifest.precision_files() if name != fastest)]

    def precision_for(self, asked: str | None, onnx: bool, fastest_by_default: bool) -> str:
        """The precision a request runs in: the one it `asked` for (NotFound saying why when
        this version has none), else the fastest that passed its gate (fp32 on the
        SavedModel backend, or when `fastest_by_default` is off)."""
        if asked is None:
            return self.precisions[0] if onnx and fastest_by_default else FP32
        if asked in self.precisions:
            return asked
        twin = self.manifest.precisions.get(asked)
        why = f"it failed its accuracy gate: {twin.reason}" if twin else "none was exported"
        raise NotFound(
            f"{self.variant} version {self.version} has no {asked} model ({why}). Ask for "
            f"precision={FP32}, or name none for the fastest that passed its gate."
        )

    async def stop_when_unused(self) -> None:
        while self.users:
            await asyncio.sleep(_RETIRE_POLL_S)
        await self.stop()

    async def stop(self) -> None:
        for batcher in self.batchers.values():
            await batcher.stop()

    def description(self) -> dict[str, Any]:
        manifest = self.manifest
        return {
            "served_version": manifest.version,
            "architecture": manifest.architecture,
            "backends": installed_backends(),
            "precisions": self.precisions,
            "precision_gate": {
                name: twin.model_dump(exclude_none=True)
                for name, twin in manifest.precisions.items()
            },
            "input": manifest.input.model_dump(),
            "output": manifest.output.model_dump(),
            "test_accuracy": manifest.test_accuracy,
            "test_samples": manifest.test_samples,
            "gate_sample_accuracy": self.sample_accuracy,
            "created_at": manifest.created_at,
        }


@dataclass
class VersionFailure:
    reason: str
    files: Fingerprint  # retried only once these change


@dataclass
class VariantRecord:
    name: str
    serving: dict[int, LoadedModel] = field(default_factory=dict)  # replaced, never mutated
    loading: set[int] = field(default_factory=set)
    failures: dict[int, VersionFailure] = field(default_factory=dict)
    unloaded: bool = False  # by the repository API: stays so until `load` is called
    # The version requests naming none get (`promotion`), each newer version's verdict, and
    # an operator's choice where one applies.
    chosen: DefaultVersion = field(default_factory=lambda: DefaultVersion(None))

    @property
    def default(self) -> int | None:
        return self.chosen.version

    @property
    def verdicts(self) -> dict[int, Verdict]:
        return self.chosen.verdicts

    required: bool = False  # readiness needs it serving: found at start, or has served
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def default_model(self) -> LoadedModel | None:
        """The version requests naming none get: the promotion's default once it is loaded,
        meanwhile the newest serving version that the gate did not hold back."""
        if self.default in self.serving:
            return self.serving[self.default]
        promoted = [version for version in self.serving if version not in self.candidates]
        return self.serving[max(promoted)] if promoted else None

    @property
    def candidates(self) -> dict[int, Verdict]:
        """Versions the gate held back (loaded or not), with why."""
        return {
            version: verdict
            for version, verdict in self.verdicts.items()
            if not verdict.passed and version != self.default
        }

    def state(self, version: int) -> str:
        if version in self.serving and version in self.candidates:
            return CANDIDATE
        if version in self.serving:
            return SERVING
        if version in self.loading:
            return LOADING
        return FAILED if version in self.failures else AVAILABLE


def discover_variants(settings: Settings) -> list[str]:
    """Variants with at least one version under the models directory, narrowed by
    MNIST_VARIANTS. A variant named there without a model is kept, so readiness says so."""
    models_dir = settings.models_dir
    found = sorted(
        child.name
        for child in (models_dir.iterdir() if models_dir.is_dir() else [])
        if child.is_dir() and _has_versions(child)
    )
    return list(settings.variants) if settings.variants else found


def _has_versions(directory: Path) -> bool:
    try:
        return bool(list_versions(directory))
    except OSError:  # unreadable (e.g. a volume's lost+found): not a variant
        return False
