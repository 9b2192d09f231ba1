"""MNIST IDX loading on the real shared copy and on broken files."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import numpy as np
import pytest

from training.data import DatasetError, load_idx_directory, read_idx, split_rows

TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def test_reads_the_shared_copy(mnist):
    assert mnist.train_images.shape == (5000, 28, 28)
    assert mnist.test_images.shape == (10000, 28, 28)
    assert mnist.train_images.dtype == np.uint8
    assert np.bincount(mnist.test_labels).tolist() == TEST_COUNTS
    assert np.bincount(mnist.train_labels).tolist() == [500] * 10
    assert mnist.describe()["train_samples"] == 5000


def _write_idx(
    path: Path, array: np.ndarray, *, gz: bool = True, magic: bytes | None = None
) -> None:
    header = magic or bytes([0, 0, 8, array.ndim])
    header += b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    payload = header + array.astype(np.uint8).tobytes()
    if gz:
        with gzip.open(path.with_name(path.name + ".gz"), "wb") as handle:
            handle.write(payload)
    else:
        path.write_bytes(payload)


def _small_dataset(directory: Path, *, gz: bool = True, n_train: int = 7, n_test: int = 3) -> None:
    rng = np.random.default_rng(0)
    _write_idx(
        directory / "train-images-idx3-ubyte", rng.integers(0, 256, (n_train, 28, 28)), gz=gz
    )
    _write_idx(directory / "train-labels-idx1-ubyte", rng.integers(0, 10, n_train), gz=gz)
    _write_idx(directory / "t10k-images-idx3-ubyte", rng.integers(0, 256, (n_test, 28, 28)), gz=gz)
    _write_idx(directory / "t10k-labels-idx1-ubyte", rng.integers(0, 10, n_test), gz=gz)


@pytest.mark.parametrize("gz", [True, False], ids=["gzip", "raw"])
def test_any_sample_count_gzip_or_raw(tmp_path, gz):
    _small_dataset(tmp_path, gz=gz)
    data = load_idx_directory(tmp_path)
    assert data.train_images.shape == (7, 28, 28)
    assert data.test_labels.shape == (3,)


def test_truncated_file_names_the_file(tmp_path, mnist_dir):
    for name in (
        "train-labels-idx1-ubyte.gz",
        "t10k-images-idx3-ubyte.gz",
        "t10k-labels-idx1-ubyte.gz",
    ):
        shutil.copy(mnist_dir / name, tmp_path / name)
    raw = gzip.decompress((mnist_dir / "train-images-idx3-ubyte.gz").read_bytes())
    (tmp_path / "train-images-idx3-ubyte").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(
        DatasetError,
        match=r"train-images-idx3-ubyte: header declares shape \(5000, 28, 28\).*truncated",
    ):
        load_idx_directory(tmp_path)


def test_truncated_gzip_stream(tmp_path):
    _small_dataset(tmp_path)
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(DatasetError, match="train-images-idx3-ubyte.gz: cannot be read"):
        load_idx_directory(tmp_path)


def test_foreign_file(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_bytes(b"hello, this is not MNIST")
    with pytest.raises(
        DatasetError, match=r"notes.txt: not an IDX file of unsigned bytes \(magic 68656c6c\)"
    ):
        read_idx(path, 3)


def test_wrong_rank(tmp_path):
    _small_dataset(tmp_path)
    shutil.copy(tmp_path / "train-labels-idx1-ubyte.gz", tmp_path / "t10k-images-idx3-ubyte.gz")
    with pytest.raises(
        DatasetError, match="t10k-images-idx3-ubyte.gz: holds a 1-D array, expected 3-D"
    ):
        load_idx_directory(tmp_path)


def test_image_and_label_counts_must_agree(tmp_path):
    _small_dataset(tmp_path)
    _write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(6))
    with pytest.raises(DatasetError, match="train split has 7 images but 6 labels"):
        load_idx_directory(tmp_path)


def test_missing_file_lists_what_is_needed(tmp_path):
    _small_dataset(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DatasetError, match=r"missing t10k-labels-idx1-ubyte\(.gz\)"):
        load_idx_directory(tmp_path)


def test_missing_directory(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        load_idx_directory(tmp_path / "nope")


def test_validation_split_is_random_not_the_last_rows():
    labels = np.repeat(np.arange(10), 10)  # sorted by class, like some IDX files
    train, val = split_rows(len(labels), 0.2, seed=3)
    train_y, val_y = labels[train], labels[val]
    assert len(val_y) == 20 and len(train_y) == 80
    assert len(np.unique(val_y)) > 5  # a tail split would hold only classes 8 and 9
    assert sorted(np.concatenate([train_y, val_y]).tolist()) == sorted(labels.tolist())
    _, again = split_rows(len(labels), 0.2, seed=3)
    np.testing.assert_array_equal(labels[again], val_y)
    with pytest.raises(ValueError, match="validation_fraction"):
        split_rows(len(labels), 1.0, seed=0)


def test_pipeline_batches_scaled_images(mnist):
    from training.data import make_dataset

    dataset = make_dataset(
        mnist.test_images[:70], mnist.test_labels[:70], 32, shuffle=True, augment=True, seed=0
    )
    batches = list(dataset.as_numpy_iterator())
    assert [len(b[1]) for b in batches] == [32, 32, 6]
    images = batches[0][0]
    assert images.dtype == np.float32 and images.shape == (32, 28, 28)
    assert images.min() >= 0.0 and images.max() <= 1.0


def test_pipeline_draws_originals_and_redrawn_copies(mnist):
    from training.data import make_dataset

    images, labels = mnist.test_images[:64], mnist.test_labels[:64]
    redrawn = np.stack([255 - images, np.zeros_like(images)])  # two recognisable "copies"
    dataset = make_dataset(
        images, labels, 64, shuffle=False, augment=False, seed=0, redrawn=redrawn
    )
    (batch, batch_labels), *_ = list(dataset.as_numpy_iterator())
    np.testing.assert_array_equal(batch_labels, labels)  # labels follow their images
    originals = (batch == images / np.float32(255)).all(axis=(1, 2))
    inverted = (batch == (255 - images) / np.float32(255)).all(axis=(1, 2))
    blank = (batch == 0).all(axis=(1, 2))
    assert (originals | inverted | blank).all()
    assert originals.sum() > 5 and inverted.sum() > 5 and blank.sum() > 5  # ~1/3 each


def test_redrawn_digits_are_framed_like_served_ones(mnist):
    from mnist_shared.preprocessing import frame_digit
    from training.augment import augment_digit, augmented_pool

    rng = np.random.default_rng(0)
    for digit in mnist.train_images[:20]:
        redrawn = augment_digit(digit, rng)
        assert redrawn.shape == (28, 28) and redrawn.dtype == np.uint8
        rows = np.flatnonzero(redrawn.max(axis=1) > 0)
        cols = np.flatnonzero(redrawn.max(axis=0) > 0)
        assert max(rows[-1] - rows[0], cols[-1] - cols[0]) + 1 <= 21  # fitted into 20x20
        # Framing is idempotent on what it produced: redrawn digits are served digits.
        assert np.abs(frame_digit(redrawn / 255.0).astype(int) - redrawn).max() <= 64
    pool = augmented_pool(mnist.train_images[:10], copies=2, seed=1)
    assert pool.shape == (2, 10, 28, 28)
    np.testing.assert_array_equal(pool, augmented_pool(mnist.train_images[:10], 2, seed=1))
