"""An operator's choice of the version a variant serves by default, kept beside its versions
(`models/<variant>/serving.json`) so that restarts, polling and every worker or replica agree.

Written by `mnist-models promote|rollback` and the model-repository API's load with a version;
removed by `mnist-models gate` (the promotion gate decides again). Written atomically: a reader
sees the old choice or the new one, never half of one.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import tempfile
from pathlib import Path

from pydantic import BaseModel, Field, ValidationError

from mnist_shared.manifest import list_versions

SERVING_FILE = "serving.json"


class ServingChoice(BaseModel):
    version: int = Field(ge=1, description="What requests naming no version get.")
    previous: int | None = Field(None, ge=1, description="The default before this choice.")
    action: str = Field(description="promote or rollback")
    at: str = Field(description="UTC time of the choice, ISO 8601.")


def read_choice(variant_dir: Path) -> ServingChoice | None:
    """The choice in `variant_dir`, None when there is none; ValueError saying what is wrong
    with an unreadable one."""
    path = variant_dir / SERVING_FILE
    try:
        return ServingChoice.model_validate_json(path.read_bytes())
    except FileNotFoundError:
        return None
    except (OSError, ValidationError) as error:
        raise ValueError(f"{path} cannot be read: {str(error).splitlines()[0]}") from None


def write_choice(variant_dir: Path, version: int, previous: int | None, action: str) -> None:
    """Record `version` as the default, atomically (a temporary file renamed into place);
    ValueError when that version is not on disk."""
    on_disk = list_versions(variant_dir)
    if version not in on_disk:
        raise ValueError(
            f"version {version} of {variant_dir.name!r} is not on disk (on disk: "
            f"{', '.join(map(str, on_disk)) or 'none'})"
        )
    choice = ServingChoice(
        version=version,
        previous=previous,
        action=action,
        at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    )
    handle, temporary = tempfile.mkstemp(prefix=".serving-", dir=variant_dir)
    try:
        with os.fdopen(handle, "w") as file:
            file.write(json.dumps(choice.model_dump(), indent=2) + "\n")
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temporary, 0o644)
        os.replace(temporary, variant_dir / SERVING_FILE)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def clear_choice(variant_dir: Path) -> bool:
    """Remove the choice (the promotion gate decides again); whether there was one."""
    try:
        (variant_dir / SERVING_FILE).unlink()
    except FileNotFoundError:
        return False
    return True
