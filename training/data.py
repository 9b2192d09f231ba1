"""MNIST loading (IDX files from a directory, or Keras' downloader) and the tf.data pipelines."""

from __future__ import annotations

import gzip
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mnist_shared.preprocessing import scale_pixels

logger = logging.getLogger(__name__)

IDX_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
# IDX magic: two zero bytes, a type code (0x08 = unsigned byte) and the number of dimensions.
_UBYTE = 0x08


class DatasetError(ValueError):
    """A data file is missing, truncated or not an MNIST IDX file."""


@dataclass(frozen=True)
class MnistData:
    """uint8 images (N, 28, 28) and uint8 labels (N,), as stored in the files."""

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    source: str

    def describe(self) -> dict[str, object]:
        return {
            "source": self.source,
            "train_samples": len(self.train_labels),
            "test_samples": len(self.test_labels),
            "train_label_counts": np.bincount(self.train_labels, minlength=10).tolist(),
        }


def read_idx(path: Path, expected_ndim: int) -> np.ndarray:
    """Read one IDX file (gzip or raw) of unsigned bytes, checking magic, rank and length."""
    raw = _read_bytes(path)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != _UBYTE:
        raise DatasetError(
            f"{path}: not an IDX file of unsigned bytes (magic {raw[:4].hex() or 'missing'}). "
            "Expected an MNIST file such as train-images-idx3-ubyte.gz."
        )
    ndim = raw[3]
    if ndim != expected_ndim:
        raise DatasetError(f"{path}: holds a {ndim}-D array, expected {expected_ndim}-D.")
    header_size = 4 + 4 * ndim
    if len(raw) < header_size:
        raise DatasetError(f"{path}: truncated header ({len(raw)} bytes). Download the file again.")
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    expected = header_size + int(np.prod(shape))
    if len(raw) != expected:
        raise DatasetError(
            f"{path}: header declares shape {shape} ({expected} bytes) but the file has "
            f"{len(raw)} bytes; it is truncated or corrupted. Download the file again."
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header_size).reshape(shape)


def _read_bytes(path: Path) -> bytes:
    try:
        with path.open("rb") as handle:
            head = handle.read(2)
        if head == b"\x1f\x8b":
            with gzip.open(path, "rb") as handle:
                return handle.read()
        return path.read_bytes()
    except (OSError, EOFError) as error:
        raise DatasetError(f"{path}: cannot be read ({error}).") from error


def _find_idx_file(directory: Path, stem: str) -> Path:
    for candidate in (directory / f"{stem}.gz", directory / stem):
        if candidate.is_file():
            return candidate
    raise DatasetError(
        f"{directory}: missing {stem}(.gz). The directory must hold the four MNIST IDX files: "
        + ", ".join(IDX_FILES.values())
    )


def load_idx_directory(directory: str | Path) -> MnistData:
    """Load the four MNIST IDX files (any sample count) from `directory`."""
    directory = Path(directory)
    if not directory.is_dir():
        raise DatasetError(f"{directory}: data directory does not exist.")
    arrays = {}
    for key, stem in IDX_FILES.items():
        arrays[key] = read_idx(_find_idx_file(directory, stem), 3 if "images" in key else 1)
    for split in ("train", "test"):
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        if len(images) != len(labels):
            raise DatasetError(
                f"{directory}: {split} split has {len(images)} images but {len(labels)} labels."
            )
        if images.shape[1:] != (28, 28):
            raise DatasetError(f"{directory}: {split} images are {images.shape[1:]}, not 28x28.")
        if labels.size and labels.max() > 9:
            raise DatasetError(f"{directory}: {split} labels contain {labels.max()}, not a digit.")
    return MnistData(**arrays, source=str(directory))


def load_mnist(directory: str | Path | None = None) -> MnistData:
    """From IDX files when `directory` is given, else Keras' downloader (needs internet)."""
    if directory is not None:
        data = load_idx_directory(directory)
    else:
        import keras

        (train_x, train_y), (test_x, test_y) = keras.datasets.mnist.load_data()
        data = MnistData(train_x, train_y, test_x, test_y, source="keras.datasets.mnist")
    logger.info(
        "MNIST from %s: %d train, %d test images",
        data.source,
        len(data.train_labels),
        len(data.test_labels),
    )
    return data


def accuracy_on_test_split(model: object, data: MnistData) -> float:
    """Accuracy of a compiled Keras classifier on the whole test split."""
    test = make_dataset(
        data.test_images, data.test_labels, 512, shuffle=False, augment=False, seed=0
    )
    _, accuracy = model.evaluate(test, verbose=0)  # type: ignore[attr-defined]
    return float(accuracy)


def split_rows(count: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(training rows, validation rows) of a random split of `count` images (never the last
    rows: files may be sorted by class)."""
    if not 0 < fraction < 1:
        raise ValueError(f"`validation_fraction` must be in (0, 1). Received: {fraction!r}")
    order = np.random.default_rng(seed).permutation(count)
    n_val = max(1, round(count * fraction))
    return order[n_val:], order[:n_val]


def make_dataset(
    images: np.ndarray,
    labels: np.ndarray,
    batch_size: int,
    *,
    shuffle: bool,
    augment: bool,
    seed: int,
    redrawn: np.ndarray | None = None,
) -> object:
    """A batched, prefetched tf.data pipeline of (float32 [0,1] images, int labels).

    `redrawn` (copies, N, 28, 28): redrawn versions of `images` (`training.augment`); each
    time an image is drawn, it is the original or one of its copies, with equal chance."""
    import tensorflow as tf

    versions = images[None] if redrawn is None else np.concatenate([images[None], redrawn])
    table = tf.constant(scale_pixels(versions))
    indices = tf.data.Dataset.range(len(labels))
    if shuffle:
        indices = indices.shuffle(len(labels), seed=seed, reshuffle_each_iteration=True)
    choices = tf.data.Dataset.random(seed=seed).map(lambda r: r % len(versions))
    label_table = tf.constant(labels.astype(np.int32))
    dataset = tf.data.Dataset.zip(choices, indices).map(
        lambda version, index: (table[version, index], label_table[index])
    )
    dataset = dataset.batch(batch_size)
    if augment:
        dataset = dataset.map(_jitter(seed), num_parallel_calls=1, deterministic=True)
    return dataset.prefetch(tf.data.AUTOTUNE)


def _jitter(seed: int) -> object:
    """Small shifts, turns and zooms: MNIST digits are centred by mass, so real variation is a
    couple of pixels and a slight slant; larger changes create digits the test set never shows."""
    import keras
    import tensorflow as tf

    augmenter = keras.Sequential(
        [
            keras.layers.RandomRotation(10 / 360, fill_mode="constant", seed=seed),
            keras.layers.RandomTranslation(0.08, 0.08, fill_mode="constant", seed=seed + 1),
            keras.layers.RandomZoom(0.08, fill_mode="constant", seed=seed + 2),
        ]
    )

    def jitter(batch: tf.Tensor, batch_labels: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        moved = augmenter(batch[..., None], training=True)[..., 0]
        return tf.clip_by_value(moved, 0.0, 1.0), batch_labels

    return jitter
