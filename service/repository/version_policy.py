"""Which versions of a model are served: TF Serving's and Triton's version policies.

    latest        the newest version (same as latest:1)
    latest:N      the N newest versions
    specific:2,3  exactly versions 2 and 3 (those of them that exist)

Versions that failed to load are skipped when choosing, so `latest` falls back to the newest
version that works instead of leaving the model without one.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass

_SPELLING = "latest, latest:N (N >= 1) or specific:V1,V2,... (versions >= 1)"


@dataclass(frozen=True)
class VersionPolicy:
    latest: int | None = 1  # serve the N newest; None when `specific` is used
    specific: frozenset[int] = frozenset()

    @classmethod
    def parse(cls, text: str) -> VersionPolicy:
        kind, _, argument = text.strip().partition(":")
        try:
            if kind == "latest":
                count = int(argument) if argument else 1
                if count >= 1:
                    return cls(latest=count)
            elif kind == "specific" and argument:
                versions = frozenset(int(part) for part in argument.split(","))
                if min(versions) >= 1:
                    return cls(latest=None, specific=versions)
        except ValueError:
            pass
        raise ValueError(f"version policy {text!r} is not one of {_SPELLING}")

    def select(self, on_disk: Iterable[int], failed: Collection[int] = ()) -> list[int]:
        """The versions to serve, ascending, out of those on disk that did not fail."""
        usable = sorted(set(on_disk) - set(failed))
        if self.latest is not None:
            return usable[-self.latest :]
        return [version for version in usable if version in self.specific]

    def __str__(self) -> str:
        if self.latest is not None:
            return f"latest:{self.latest}"
        return "specific:" + ",".join(str(version) for version in sorted(self.specific))
