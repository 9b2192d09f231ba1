"""Each classifier (the three served and the BatchNormalization baseline) builds, predicts
probabilities and trains a step; the twin has no normalization."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from training.layers import GroupNormalization, InstanceNormalization, LayerNormalization
from training.models import build_classifier

NORM_TYPES = {
    "group": GroupNormalization,
    "instance": InstanceNormalization,
    "layer": LayerNormalization,
    "batch": keras.layers.BatchNormalization,
}


@pytest.mark.parametrize("arch", ["tutorial", "cnn"])
@pytest.mark.parametrize("variant", ["group", "instance", "layer", "batch"])
def test_builds_and_trains_one_step(variant, arch):
    model = build_classifier(variant, arch)
    norms = [layer for layer in model.layers if isinstance(layer, NORM_TYPES[variant])]
    assert len(norms) == (1 if arch == "tutorial" else 4)
    assert type(norms[0]) is NORM_TYPES[variant]
    x = np.random.default_rng(0).random((16, 28, 28), dtype=np.float32)
    y = np.arange(16) % 10
    before = [w.copy() for w in model.get_weights()]
    loss = model.train_on_batch(x, y)
    assert np.isfinite(loss).all()
    assert any(not np.array_equal(a, b) for a, b in zip(before, model.get_weights(), strict=True))
    probabilities = model.predict(x, verbose=0)
    assert probabilities.shape == (16, 10)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)


def test_tutorial_network_matches_the_tutorial():
    model = build_classifier("group", "tutorial")
    kinds = [type(layer).__name__ for layer in model.layers]
    assert kinds == [
        "InputLayer",
        "Reshape",
        "Conv2D",
        "GroupNormalization",
        "Flatten",
        "Dense",
        "Dropout",
        "Dense",
    ]
    assert model.get_layer("norm").groups == 5
    assert model.get_layer("conv").filters == 10
    assert model.input_shape == (None, 28, 28)


def test_normalization_free_twin():
    model = build_classifier("group", "cnn", normalize=False)
    assert not [layer for layer in model.layers if isinstance(layer, tuple(NORM_TYPES.values()))]
    normalized = build_classifier("group", "cnn")
    # Same weights apart from the normalization's gamma/beta.
    norm_weights = sum(
        len(layer.weights) for layer in normalized.layers if isinstance(layer, GroupNormalization)
    )
    assert len(model.weights) == len(normalized.weights) - norm_weights


def test_the_batch_baseline_normalizes_with_the_batch_in_training_only():
    """BatchNormalization's output for one image depends on the rest of the batch while it
    trains (the statistics are the batch's), not at inference (the moving averages): what the
    normalization study measures against our per-sample layers."""
    model = build_classifier("batch", "tutorial")
    images = np.random.default_rng(0).random((8, 28, 28), dtype=np.float32)
    others = np.random.default_rng(1).random((8, 28, 28), dtype=np.float32) * 0.2
    alone, mixed = images, np.concatenate([images[:1], others[1:]])
    trained = [model(batch, training=True).numpy()[0] for batch in (alone, mixed)]
    served = [model(batch, training=False).numpy()[0] for batch in (alone, mixed)]
    assert np.abs(trained[0] - trained[1]).max() > 1e-4
    np.testing.assert_allclose(served[0], served[1], atol=1e-6)


def test_unknown_variant_and_arch():
    with pytest.raises(
        ValueError, match="Unknown `variant` 'batchy'; choose one of group, instance, layer, batch"
    ):
        build_classifier("batchy")
    with pytest.raises(ValueError, match="Unknown `arch` 'resnet'; choose one of tutorial, cnn"):
        build_classifier("group", "resnet")


def test_group_normalization_sized_by_channels_per_group():
    model = build_classifier("group", "cnn", channels_per_group=16)
    assert [layer.groups for layer in model.layers if isinstance(layer, GroupNormalization)] == [
        2, 2, 4, 4,
    ]  # fmt: skip
    with pytest.raises(ValueError, match="`channels_per_group`=3 does not divide the 10 channels"):
        build_classifier("group", "tutorial", channels_per_group=3)
