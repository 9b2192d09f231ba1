"""The tests read the committed model versions whatever a local retrain adds to models/."""

from __future__ import annotations

import subprocess

from devtools.committed import MIRROR_NAME, committed_models


def _git(repo, *args):
    subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True)


def _checkout(tmp_path):
    repo = tmp_path / "repo"
    version = repo / "models" / "group" / "3"
    version.mkdir(parents=True)
    (version / "manifest.json").write_text('{"version": 3}')
    (version / "model.onnx").write_bytes(b"onnx")
    _git(repo, "init", "-q")
    _git(repo, "add", "models")
    return repo


def test_an_untouched_checkout_reads_models_itself(tmp_path):
    repo = _checkout(tmp_path)
    assert committed_models(repo) == repo / "models"


def test_a_retrained_version_is_left_out(tmp_path):
    repo = _checkout(tmp_path)
    retrained = repo / "models" / "group" / "4"
    retrained.mkdir()
    (retrained / "manifest.json").write_text('{"version": 4}')
    (repo / "models" / "training_summary.json").write_text("{}")
    committed = committed_models(repo)
    assert committed == repo / MIRROR_NAME
    files = sorted(p.relative_to(committed).as_posix() for p in committed.rglob("*") if p.is_file())
    assert files == [".tracked", "group/3/manifest.json", "group/3/model.onnx"]
    assert (committed / "group" / "3" / "model.onnx").read_bytes() == b"onnx"
