"""What one `mnist-train` run leaves besides its model versions: a summary of every variant it
trained and their curves, in a directory of its own that did not exist before the run
(`runs/train-<UTC time>-<pid>/`). Training never edits a file that exists: the committed
`models/` stays as git has it, and each exported version carries its own curves."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from training.plots import plot_histories


def runs_dir_for(output_dir: Path, runs_dir: str | None) -> Path:
    """`--runs-dir`, else runs/ beside the models directory."""
    return Path(runs_dir) if runs_dir else output_dir.resolve().parent / "runs"


def unwritable(directories: list[Path]) -> str | None:
    """Why this user cannot create entries in one of `directories` (each made on demand, so its
    nearest existing parent decides), else None. Checked before training: a run must not train
    for an hour and then fail to write what it made."""
    for directory in directories:
        existing = directory.resolve()
        while not existing.exists():
            existing = existing.parent
        if not existing.is_dir():
            return f"{directory}: {existing} is a file, not a directory"
        if not os.access(existing, os.W_OK | os.X_OK):
            return f"{directory}: uid {os.getuid()} may not write in {existing}"
    return None


def write_run_record(results: list[dict[str, Any]], runs_dir: Path) -> Path:
    """`training_summary.json` and `training_curves.png` of a run, in a new directory."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    run_dir = runs_dir / f"train-{stamp}-{os.getpid()}"
    run_dir.mkdir(parents=True, exist_ok=False)
    summary = {result["variant"]: result for result in results}
    text = json.dumps(summary, indent=2, default=_plain)
    (run_dir / "training_summary.json").write_text(text + "\n")
    histories = {result["variant"]: result["history"] for result in results}
    plot_histories(histories, run_dir / "training_curves.png")
    return run_dir


def _plain(value: Any) -> Any:
    """JSON for what a result holds besides plain values (the evaluations' models)."""
    return value.model_dump() if hasattr(value, "model_dump") else str(value)
