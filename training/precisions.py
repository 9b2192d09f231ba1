"""`mnist-quantize`: give an exported version its INT8 twin, gated, without exporting it again.

For versions exported before the twins existed (or re-gated after an onnxruntime upgrade): the
twin is made from the version's own fp32 ONNX file, gated exactly as `mnist-export` gates it
(`training.onnx.quantize`), and recorded in the manifest. The fp32 files are not touched; the
twin's file is written first and the manifest replaced atomically after it, so a server polling
the directory sees either the old version or the new one, never half of it. A server already
serving the version keeps serving what it loaded; a restart (or a rolling update) serves the twin.

    mnist-quantize models/*/3 --data-dir ../shared/data/mnist --realworld-set runs/realworld.npz
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
from pathlib import Path

from mnist_shared.manifest import MANIFEST_NAME, Manifest, sha256_file, verify_artifacts
from training.export import REALWORLD_SET_HELP, Int8Data, reduced_precisions

logger = logging.getLogger(__name__)


def add_reduced_precisions(version_dir: Path, data: Int8Data) -> Manifest:
    """Make, gate and record the version's INT8 twin; return the manifest written."""
    manifest = Manifest.read(version_dir)
    verify_artifacts(version_dir, manifest, only=[manifest.onnx_file])
    precisions = reduced_precisions(version_dir / manifest.onnx_file, data)
    fp32_file = version_dir / manifest.onnx_file
    files = dict(manifest.files)
    for twin in precisions.values():
        if twin.file:
            files[twin.file] = sha256_file(version_dir / twin.file)
            shutil.copymode(fp32_file, version_dir / twin.file)  # readable as fp32's is
    updated = manifest.model_copy(update={"precisions": precisions, "files": files})
    updated.write(version_dir)
    shutil.copymode(fp32_file, version_dir / MANIFEST_NAME)
    return updated


def main(argv: list[str] | None = None) -> int:
    from training.data import load_mnist
    from training.variants import setup_logging

    parser = argparse.ArgumentParser(
        prog="mnist-quantize",
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("version_dirs", nargs="+", type=Path, help="e.g. models/group/3")
    parser.add_argument(
        "--data-dir",
        default=os.environ.get("MNIST_DATA_DIR"),
        help="MNIST IDX directory (env MNIST_DATA_DIR); unset: keras.datasets.mnist",
    )
    parser.add_argument("--realworld-set", type=Path, help=REALWORLD_SET_HELP)
    args = parser.parse_args(argv)
    setup_logging()
    data = load_mnist(args.data_dir)
    images = Int8Data.from_splits(
        data.train_images, data.test_images, data.test_labels, realworld_set=args.realworld_set
    )
    for version_dir in args.version_dirs:
        twin = add_reduced_precisions(version_dir, images).precisions["int8"]
        verdict = f"served as {twin.file}" if twin.passed_gate else f"not served: {twin.reason}"
        print(
            f"{version_dir}: int8 {verdict} (test accuracy {twin.test_accuracy:.2%} vs fp32 "
            f"{twin.fp32_test_accuracy:.2%}, agreement {twin.agreement:.2%}, "
            f"{twin.cpu_us_per_image:.0f} vs {twin.fp32_cpu_us_per_image:.0f} us per image)",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
