"""`mnist-study --quick` end to end: every run recorded with finite numbers, the plot written,
and a second call resumes (trains nothing again)."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest

from devtools import REPO_ROOT
from training.study import parse_args, summarize, table


def _study(mnist_dir, output_dir) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "training.study", "--quick", "--train-limit", "300"]
    command += ["--data-dir", str(mnist_dir), "--output-dir", str(output_dir)]
    return subprocess.run(
        command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600, check=False
    )


def test_the_quick_study_writes_every_run_and_resumes(mnist_dir, tmp_path):
    first = _study(mnist_dir, tmp_path)
    assert first.returncode == 0, first.stderr[-2000:]
    study = json.loads((tmp_path / "study.json").read_text())
    assert sorted(study["runs"]) == [
        "batch/b32/s0", "batch/b8/s0", "group/b32/s0", "group/b8/s0",
    ]  # fmt: skip
    for run in study["runs"].values():
        assert 0 <= run["test_error"] <= 1 and math.isfinite(run["test_error"])
        assert run["ms_per_step"] > 0 and run["images_seen"] == 300
        assert run["learning_rate"] == 1e-3 * run["batch_size"] / 32
    assert (tmp_path / "study.png").stat().st_size > 10_000
    assert "| batch | " in first.stdout and "| group | " in first.stdout
    again = _study(mnist_dir, tmp_path)
    assert again.returncode == 0, again.stderr[-2000:]
    assert again.stdout.count("done before, kept") == 4
    assert json.loads((tmp_path / "study.json").read_text()) == study


def test_the_table_shows_mean_and_spread_over_seeds():
    runs = [
        {"normalization": "group", "batch_size": 2, "test_error": error, "ms_per_step": 1.0}
        for error in (0.01, 0.03)
    ]
    summary = summarize(runs)
    assert summary["group"][2]["error_mean"] == 0.02
    assert math.isclose(summary["group"][2]["error_spread"], 0.01414, rel_tol=1e-3)
    assert table(summary).splitlines()[-1] == "| group | 2.00% ± 1.41% |"
    assert table(summary, cost=True).splitlines()[-1] == "| group | 1.0 ms |"


def test_an_unknown_normalization_is_refused_before_any_training():
    with pytest.raises(SystemExit, match="unknown normalization 'layer-c2'"):
        parse_args(["--normalizations", "group,layer-c2"])
