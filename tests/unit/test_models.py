"""Each classifier (the three served and the BatchNormalization baseline) builds, predicts
probabilities and trains a step; the twin has no normalization."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from training.layers import GroupNormalization, InstanceNormalization, LayerNormalization
from training.models import build_classifier, training_callbacks

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


def test_the_model_ends_training_holding_the_moving_average_of_its_weights():
    """With `ema_momentum`, what training leaves in the model (and export saves) is the
    exponential moving average of the weights after each step, computed here by hand."""
    momentum = 0.6
    keras.utils.set_random_seed(0)
    model = build_classifier("group", "tutorial", 1e-2, ema_momentum=momentum, jit_compile=False)
    rng = np.random.default_rng(0)
    x = rng.random((24, 28, 28), dtype=np.float32)
    y = np.arange(24) % 10
    after_each_step: list[list[np.ndarray]] = []
    record = keras.callbacks.LambdaCallback(
        on_train_batch_end=lambda batch, logs: after_each_step.append(
            [w.numpy().copy() for w in model.trainable_weights]
        )
    )
    callbacks = [*training_callbacks(patience=10, ema_momentum=momentum), record]
    model.fit(x, y, batch_size=8, epochs=2, validation_data=(x, y), callbacks=callbacks, verbose=0)
    average = after_each_step[0]  # the first step's weights start the average
    for weights in after_each_step[1:]:
        average = [momentum * a + (1 - momentum) * w for a, w in zip(average, weights, strict=True)]
    # Early stopping restores its best epoch: the second, as the loss on x keeps falling.
    for held, expected in zip(model.trainable_weights, average, strict=True):
        np.testing.assert_allclose(held.numpy(), expected, rtol=1e-5, atol=1e-6)
    assert not np.allclose(model.trainable_weights[0].numpy(), after_each_step[-1][0])


@pytest.mark.parametrize("momentum", [0.0, 1.0, -0.5])
def test_an_ema_momentum_outside_0_1_is_refused(momentum):
    with pytest.raises(ValueError, match=rf"`ema_momentum` must be in \(0, 1\).*{momentum!r}"):
        build_classifier("group", "tutorial", ema_momentum=momentum)
