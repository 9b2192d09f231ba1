"""The device setup on a CPU-only machine (CI): float32, default strategy, clear errors."""

from __future__ import annotations

import keras
import pytest

from training.device import choose_precision, configure_devices


@pytest.mark.parametrize(
    ("capability", "expected"),
    [
        (None, "float32"),
        ((6, 1), "float32"),
        ((7, 0), "mixed_float16"),
        ((7, 5), "mixed_float16"),
        ((8, 0), "mixed_bfloat16"),
        ((9, 0), "mixed_bfloat16"),
    ],
)
def test_precision_by_compute_capability(capability, expected):
    assert choose_precision(capability) == expected


def test_cpu_setup_is_float32_with_default_strategy(caplog):
    caplog.set_level("INFO", logger="training.device")
    try:
        setup = configure_devices("auto")
        assert setup.gpus == 0 and setup.precision == "float32"
        assert setup.describe()["strategy"] == "_DefaultDistributionStrategy"
        assert keras.mixed_precision.global_policy().name == "float32"
        assert "0 GPU(s), precision float32" in caplog.text
        assert configure_devices("mixed_bfloat16").precision == "mixed_bfloat16"  # flag overrides
    finally:
        keras.mixed_precision.set_global_policy("float32")


def test_unknown_precision():
    with pytest.raises(ValueError, match=r"`precision` must be one of .*Received: precision='fp8'"):
        configure_devices("fp8")
