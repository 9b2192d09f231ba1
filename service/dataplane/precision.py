"""Which model file a request runs: the exported fp32 one or a reduced-precision twin that
passed its accuracy gate (`mnist_shared.manifest.Manifest.precision_files`)."""

from __future__ import annotations

from mnist_shared.manifest import FP32, PRECISIONS
from service.errors import BadRequest
from service.repository.variants import LoadedModel
from service.runtime.backends import OnnxBackend


def check_precision(precision: str | None, backend: str) -> str | None:
    """The precision a request names (None: each model's default), known and runnable on
    `backend`; whether each model has it is `precision_of`'s question."""
    if not precision:
        return None
    if precision not in PRECISIONS:
        raise BadRequest(
            f"unknown precision {precision[:40]!r}: choose one of {', '.join(PRECISIONS)}, "
            "or name none for the fastest that passed its accuracy gate."
        )
    if precision != FP32 and backend != OnnxBackend.name:
        raise BadRequest(
            f"precision {precision} runs on the onnx backend only; the {backend} backend "
            f"serves {FP32}."
        )
    return precision


def precision_of(model: LoadedModel, backend: str, asked: str | None, default: str) -> str:
    """The precision `model` runs a request in: the one `asked` for (NotFound saying why when
    the version has none), else MNIST_DEFAULT_PRECISION's choice (`default`: "fastest" or
    "fp32"; always fp32 on the SavedModel backend)."""
    onnx = backend == OnnxBackend.name
    return model.precision_for(asked, onnx=onnx, fastest_by_default=default == "fastest")
