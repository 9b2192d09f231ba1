"""The model repository's operations (as MLServer's `ModelRepositoryHandlers`): what the
repository extension's REST routes and `/models` call, beside the data plane's inference."""

from __future__ import annotations

from typing import Any

from service.errors import BadRequest
from service.repository.registry import ModelRegistry
from service.runtime.model_loading import LoadFailed


class RepositoryHandlers:
    def __init__(self, registry: ModelRegistry) -> None:
        self._registry = registry

    def index(self) -> list[dict[str, Any]]:
        """Every model version on disk, with its state."""
        return self._registry.index()

    def describe(self) -> list[dict[str, Any]]:
        """Each variant as `/models` shows it: versions, backends, input spec, accuracy."""
        return self._registry.describe()

    async def load(self, name: str) -> list[int]:
        """Rescan `name` and serve the newest version the policy allows: the versions now
        serving, or BadRequest with the reason if that version failed."""
        try:
            await self._registry.load_now(name)
        except LoadFailed as error:
            raise BadRequest(str(error)) from None
        return self._registry.serving_versions(name)

    async def choose_version(self, name: str, version: int) -> dict[str, Any]:
        """Serve `version` of `name` to requests naming none (promote or roll back), or
        BadRequest with the reason it cannot."""
        try:
            action = await self._registry.choose_version(name, version)
        except LoadFailed as error:
            raise BadRequest(str(error)) from None
        return {"default": version, "action": action}

    def serving_versions(self, name: str) -> list[int]:
        return self._registry.serving_versions(name)

    async def unload(self, name: str) -> None:
        await self._registry.unload(name)
