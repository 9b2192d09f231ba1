"""The model registry's state, a record per variant, and what it shows: readiness, the
repository index and `/models`, and why a variant is not serving. `ModelRegistry` builds on it
and is the only one to change it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mnist_shared.manifest import list_versions
from service.repository.variants import VariantRecord
from service.settings import Settings


class RegistryState:
    def __init__(self, settings: Settings, variants: list[str]) -> None:
        self._settings = settings
        # The variants found at start must serve for the service to be ready; one that
        # appears later becomes required once it has served (a broken new export never takes
        # the service down), and the default variant stays the first found at start.
        self._variants = {name: VariantRecord(name, required=True) for name in variants}
        self._first_variant = next(iter(self._variants), "")
        self.loading = True  # until the first sync has finished

    @property
    def variants(self) -> list[str]:
        """The variants meant to be served (every known one except those unloaded)."""
        return [name for name, record in sorted(self._variants.items()) if not record.unloaded]

    @property
    def ready(self) -> bool:
        """Loaded, something serving, and every required variant not unloaded serving."""
        records = [self._variants[name] for name in self.variants]
        required = [record for record in records if record.required]
        serving = any(record.serving for record in records)
        return not self.loading and serving and all(record.serving for record in required)

    def readiness(self) -> dict[str, Any]:
        errors = {
            name: self._why_not_serving(self._variants[name])
            for name in self.variants
            if not self._variants[name].serving and not self.loading
        }
        if not self._variants:
            errors["models"] = self.no_models_message()
        loaded = {name: record.default_model() for name, record in sorted(self._variants.items())}
        return {
            "ready": self.ready,
            "loading": self.loading,
            "loaded": {name: model.version for name, model in loaded.items() if model},
            "errors": errors,
        }

    def no_models_message(self, where: Path | None = None) -> str:
        return (
            f"no model version with a manifest.json under {where or self._settings.models_dir}; "
            "train one with `make train` or point MNIST_MODELS_DIR at the models directory."
        )

    def index(self) -> list[dict[str, Any]]:
        """Every variant's versions on disk (and loaded), each with its state."""
        rows = []
        for name, record in sorted(self._variants.items()):
            on_disk = set(list_versions(self._variant_dir(name))) | record.serving.keys()
            for version in sorted(on_disk):
                row = {"name": name, "version": version, "state": record.state(version)}
                if version in record.failures:
                    row["reason"] = record.failures[version].reason
                elif version in record.candidates:
                    row["reason"] = "held back by the promotion gate: " + "; ".join(
                        record.candidates[version].reasons
                    )
                rows.append(row)
        return rows

    def describe(self) -> list[dict[str, Any]]:
        """Per variant: its versions with their states, and the newest serving one's spec."""
        index = self.index()
        described = []
        for name, record in sorted(self._variants.items()):
            entry: dict[str, Any] = {
                "variant": name,
                "versions": [
                    {key: value for key, value in row.items() if key != "name"}
                    for row in index
                    if row["name"] == name
                ],
                "loaded": bool(record.serving),
                "unloaded": record.unloaded,
            }
            entry["default_chosen_by"] = self._chosen_by(record)
            if record.verdicts:
                entry["promotion"] = [verdict.describe() for verdict in record.verdicts.values()]
            if (model := record.default_model()) is not None:
                entry |= model.description()
            else:
                entry["error"] = self._why_not_serving(record)
            described.append(entry)
        return described

    def _chosen_by(self, record: VariantRecord) -> str:
        """Why the default version is the default."""
        chosen = record.chosen
        if chosen.choice is not None:
            return f"{chosen.choice.action} at {chosen.choice.at} (serving.json)"
        how = "the newest (MNIST_PROMOTION=always)"
        if self._settings.promotion == "gate":
            how = "the promotion gate"
        return f"{how}; {chosen.note}" if chosen.note else how

    def _variant_dir(self, variant: str) -> Path:
        return self._settings.models_dir / variant

    def _why_not_serving(self, record: VariantRecord) -> str:
        if record.unloaded:
            return (
                f"model {record.name!r} is unloaded; load it with "
                f"POST /v2/repository/models/{record.name}/load."
            )
        if self.loading or record.loading:
            return f"model {record.name!r} is still loading; retry in a few seconds."
        if record.failures:
            newest = max(record.failures)
            return (
                f"model {record.name!r} failed to load: version {newest}: "
                f"{record.failures[newest].reason}"
            )
        return self.no_models_message(self._variant_dir(record.name))
