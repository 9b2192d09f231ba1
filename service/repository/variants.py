"""What the registry holds per variant: the versions serving (each with its batchers), those
loading and those refused, and the state of any version on disk."""

from __future__ import annotations

import asyncio
import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mnist_shared.manifest import FP32, Manifest
from service.errors import NotFound
from service.runtime.backends import installed_backends
from service.runtime.batching import MicroBatcher
from service.runtime.model_loading import Fingerprint

SERVING, LOADING, AVAILABLE, FAILED = "serving", "loading", "available", "failed"
_RETIRE_POLL_S = 0.05


@dataclass(eq=False)  # hashable by identity: the registry keeps a set of retiring ones
class LoadedModel:
    variant: str
    version_dir: Path
    manifest: Manifest
    # By (backend, precision): ("onnx", "fp32"), ("onnx", "int8"), ("savedmodel", "fp32").
    batchers: dict[tuple[str, str], MicroBatcher] = field(default_factory=dict)
    users: int = 0  # requests using this version now; it retires when they are done

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
    required: bool = False  # readiness needs it serving: found at start, or has served
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def latest(self) -> LoadedModel | None:
        return self.serving[max(self.serving)] if self.serving else None

    def state(self, version: int) -> str:
        if version in self.serving:
            return SERVING
        if version in self.loading:
            return LOADING
        return FAILED if version in self.failures else AVAILABLE
