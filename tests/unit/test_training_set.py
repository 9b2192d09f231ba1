"""What a run trains on: client frames of the training rows (never the validation rows), the
UCI-like low-resolution kind, the elastic warp, and the errors a wrong frames file gives."""

from __future__ import annotations

import dataclasses
import io
import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from training.training_set import ClientFramesError, prepare_training_set, read_client_frames


@dataclasses.dataclass(frozen=True)
class _Config:
    validation_fraction: float = 0.2
    seed: int = 0
    corrections: str | None = None
    redrawn_copies: int = 0
    client_frames: str | None = None


def _numbered_images(count: int) -> np.ndarray:
    """Image i is filled with the value i: which image a row came from can be read back."""
    return np.broadcast_to(np.arange(count, dtype=np.uint8)[:, None, None], (count, 28, 28)).copy()


def _frames_file(path: Path, images: np.ndarray, copies: int) -> Path:
    frames = np.stack([images + 100 * (copy + 1) for copy in range(copies)]).astype(np.uint8)
    np.savez_compressed(path, frames=frames, kinds=np.full(frames.shape[:2], "grey_photo"))
    return path


def test_client_frames_of_the_training_rows_only(tmp_path):
    images = _numbered_images(50)
    data = SimpleNamespace(train_images=images, train_labels=np.arange(50) % 10)
    config = _Config(client_frames=str(_frames_file(tmp_path / "f.npz", images, copies=2)))
    training_set = prepare_training_set(config, data)
    assert training_set.redrawn.shape == (2, 40, 28, 28)
    sources = training_set.train_images[:, 0, 0]
    for copy in range(2):  # each frame stands beside the very image it was drawn from
        np.testing.assert_array_equal(
            training_set.redrawn[copy, :, 0, 0], sources + 100 * (copy + 1)
        )
    held_out = set(training_set.val_images[:, 0, 0].tolist())
    assert len(held_out) == 10 and not held_out & set(sources.tolist())


def test_redrawn_copies_come_first_then_client_frames(tmp_path, mnist):
    images, labels = mnist.train_images[:20], mnist.train_labels[:20]
    config = _Config(
        redrawn_copies=1, client_frames=str(_frames_file(tmp_path / "f.npz", images, copies=2))
    )
    training_set = prepare_training_set(
        config, SimpleNamespace(train_images=images, train_labels=labels)
    )
    assert training_set.redrawn.shape == (3, 16, 28, 28)
    np.testing.assert_array_equal(
        training_set.redrawn[1:],
        (training_set.train_images[None] + np.array([100, 200])[:, None, None, None]).astype(
            np.uint8
        ),
    )


def test_corrections_stand_as_themselves_in_every_frame_copy(tmp_path, monkeypatch):
    from training import corrections as corrections_module

    images = _numbered_images(10)
    fixed = np.full((3, 28, 28), 77, np.uint8)

    class _Corrections:
        def __init__(self, directory: Path) -> None: ...

        def mixed_into(self, images, labels):
            return np.concatenate([images, fixed]), np.concatenate([labels, [1, 2, 3]])

    monkeypatch.setattr(corrections_module, "Corrections", _Corrections)
    config = _Config(
        corrections=str(tmp_path), client_frames=str(_frames_file(tmp_path / "f.npz", images, 1))
    )
    training_set = prepare_training_set(
        config, SimpleNamespace(train_images=images, train_labels=np.arange(10))
    )
    assert training_set.redrawn.shape == (1, 11, 28, 28)
    np.testing.assert_array_equal(training_set.redrawn[0, -3:], fixed)


def test_a_frames_file_of_other_images_names_the_fix(tmp_path):
    path = _frames_file(tmp_path / "f.npz", _numbered_images(30), copies=1)
    with pytest.raises(
        ClientFramesError, match=r"not \(copies, 50, 28, 28\) uint8 for these 50 training images"
    ):
        read_client_frames(path, 50)
    with pytest.raises(
        ClientFramesError, match=r"cannot be read .* python -m devtools.client_frames"
    ):
        read_client_frames(tmp_path / "missing.npz", 50)


def test_mnist_train_refuses_a_wrong_frames_file_before_training(tmp_path, mnist_dir, capsys):
    from tests.system.test_train_export import _train

    path = _frames_file(tmp_path / "f.npz", _numbered_images(30), copies=1)
    assert _train(mnist_dir, tmp_path / "models", "--client-frames", str(path)) == 2
    assert re.search(r"not \(copies, \d+, 28, 28\)", capsys.readouterr().err)
    assert not list(tmp_path.rglob("*.onnx"))


def test_mnist_train_refuses_a_missing_realworld_set_before_training(tmp_path, mnist_dir):
    from tests.system.test_train_export import _train

    missing = tmp_path / "realworld.npz"
    with pytest.raises(SystemExit, match=r"--realworld-set .*realworld.npz cannot be read"):
        _train(mnist_dir, tmp_path / "models", "--realworld-set", str(missing))
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_low_resolution_pictures_are_scanned_like_the_uci_digits(mnist):
    from devtools.pictures.low_resolution import low_resolution

    rng = np.random.default_rng(0)
    for digit in mnist.train_images[:10]:
        picture = Image.open(io.BytesIO(low_resolution(digit, rng).data))
        assert picture.format == "PNG" and picture.mode == "L"
        assert 64 <= picture.width == picture.height <= 80  # 64 px and a margin of 0-8
        pixels = np.asarray(picture)
        assert pixels.min() < 60 and pixels.max() == 255  # dark ink on white paper


def test_low_resolution_digits_are_read_by_the_service_framing(mnist):
    from devtools.client_frames import frame_chunk

    framed, kinds = frame_chunk(mnist.train_images[:6], seed=1, copy=0, start=0)
    assert framed.shape == (6, 28, 28) and framed.dtype == np.uint8 and len(kinds) == 6
    again, _ = frame_chunk(mnist.train_images[:6], seed=1, copy=0, start=0)
    np.testing.assert_array_equal(framed, again)  # same seed, same frames
    assert not np.array_equal(framed, frame_chunk(mnist.train_images[:6], 1, 1, 0)[0])


def test_client_frames_file_holds_every_copy_in_row_order(mnist):
    from devtools.client_frames import client_frames

    written = client_frames(mnist.train_images[:4], copies=2, seed=3, workers=1)
    assert written["frames"].shape == (2, 4, 28, 28) and written["kinds"].shape == (2, 4)
    # A digit's frame is still that digit: its ink overlaps the original's (both centred).
    for copy in range(2):
        for row in range(4):
            frame, original = written["frames"][copy, row] > 64, mnist.train_images[row] > 64
            assert (frame & original).sum() > 0.3 * original.sum()


def test_elastic_warp_bends_without_breaking(mnist):
    from training.augment import _elastic

    strokes = Image.fromarray(mnist.train_images[0]).resize((112, 112))
    rng = np.random.default_rng(0)
    np.testing.assert_array_equal(np.asarray(_elastic(strokes, 0.0, rng)), np.asarray(strokes))
    warped = np.asarray(_elastic(strokes, 12.0, rng)).astype(int)
    assert np.abs(warped - np.asarray(strokes)).max() > 100  # strokes moved
    assert 0.7 < (warped > 128).sum() / (np.asarray(strokes) > 128).sum() < 1.3  # ink kept
