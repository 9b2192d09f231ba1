"""Corrections from users: the 28x28 picture a model read, the digit it should have read, and
which model read it. The service writes them (`POST /feedback`), `mnist-train --corrections`
trains on them and holds a share out for the promotion gate.

One JSON file per correction, written atomically under a name that never repeats; the
uploaded photo is never kept, only the model's 28x28 input.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import os
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mnist_shared.preprocessing import IMAGE_SIZE

# The share of corrections held out of training, chosen by a hash of each file's name (stable
# across runs, so that a correction held out once is never trained on later).
HELD_OUT_SHARE = 0.2


@dataclass(frozen=True)
class Correction:
    pixels: np.ndarray  # uint8 (28, 28), white on black, as the model read it
    label: int
    variant: str
    versions: dict[str, int]  # the version of each variant that read it
    time: str  # UTC, ISO 8601


def save_correction(directory: Path, correction: Correction) -> Path:
    """Write one correction as `<time>-<random>.json`, atomically; its path."""
    directory.mkdir(parents=True, exist_ok=True)
    record = {
        "label": correction.label,
        "variant": correction.variant,
        "versions": correction.versions,
        "time": correction.time,
        "pixels": base64.b64encode(correction.pixels.astype(np.uint8).tobytes()).decode(),
    }
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S")
    path = directory / f"{stamp}-{uuid.uuid4().hex[:12]}.json"
    handle, temporary = tempfile.mkstemp(prefix=".correction-", dir=directory)
    try:
        with os.fdopen(handle, "w") as file:
            json.dump(record, file)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def load_corrections(directory: Path) -> tuple[list[Correction], list[Correction]]:
    """(for training, held out): every readable correction under `directory`, split by
    HELD_OUT_SHARE. ValueError naming the first file that is not a correction."""
    training, held_out = [], []
    for path in sorted(directory.glob("*.json")):
        try:
            record = json.loads(path.read_text())
            pixels = np.frombuffer(base64.b64decode(record["pixels"]), np.uint8)
            correction = Correction(
                pixels.reshape(IMAGE_SIZE, IMAGE_SIZE),
                int(record["label"]),
                str(record["variant"]),
                {str(k): int(v) for k, v in record.get("versions", {}).items()},
                str(record["time"]),
            )
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise ValueError(f"{path} is not a correction ({error})") from None
        if not 0 <= correction.label <= 9:
            raise ValueError(f"{path}: label {correction.label} is not a digit")
        (held_out if is_held_out(path.name) else training).append(correction)
    return training, held_out


def is_held_out(name: str) -> bool:
    digest = hashlib.sha256(name.encode()).digest()
    return int.from_bytes(digest[:4], "big") / 2**32 < HELD_OUT_SHARE


def as_arrays(corrections: list[Correction]) -> tuple[np.ndarray, np.ndarray]:
    """uint8 (N, 28, 28) pictures and int64 (N,) labels."""
    if not corrections:
        return np.zeros((0, IMAGE_SIZE, IMAGE_SIZE), np.uint8), np.zeros(0, np.int64)
    return (
        np.stack([c.pixels for c in corrections]),
        np.array([c.label for c in corrections], np.int64),
    )
