"""Our normalization layers: values, config, saving, mixed precision, XLA and argument errors."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from training.layers import GroupNormalization, InstanceNormalization, LayerNormalization

RNG = np.random.default_rng(1234)
SHAPE = (4, 6, 6, 10)


@pytest.fixture(autouse=True)
def _float32_policy():
    keras.mixed_precision.set_global_policy("float32")
    yield
    keras.mixed_precision.set_global_policy("float32")


def _random_input(shape=SHAPE, loc=1.5, scale=2.0):
    return RNG.normal(loc, scale, shape).astype("float32")


def _copy_random_weights(ours, reference, input_shape=SHAPE):
    ours.build(input_shape)
    reference.build(input_shape)
    assert len(ours.weights) == len(reference.weights)
    for mine, theirs in zip(ours.weights, reference.weights, strict=True):
        value = RNG.normal(0.5, 1.0, mine.shape).astype("float32")
        mine.assign(value)
        theirs.assign(value)


@pytest.mark.parametrize(
    ("ours", "reference"),
    [
        (
            lambda: GroupNormalization(groups=5, axis=3),
            lambda: keras.layers.GroupNormalization(5, axis=3),
        ),
        (lambda: GroupNormalization(groups=2), lambda: keras.layers.GroupNormalization(2)),
        (
            lambda: InstanceNormalization(axis=3),
            lambda: keras.layers.GroupNormalization(-1, axis=3),
        ),
        (lambda: LayerNormalization(axis=3), lambda: keras.layers.LayerNormalization(axis=3)),
        (
            lambda: LayerNormalization(axis=[1, 2, 3]),
            lambda: keras.layers.LayerNormalization(axis=[1, 2, 3]),
        ),
        (
            lambda: GroupNormalization(5, axis=3, scale=False),
            lambda: keras.layers.GroupNormalization(5, axis=3, scale=False),
        ),
        (
            lambda: LayerNormalization(axis=-1, center=False),
            lambda: keras.layers.LayerNormalization(axis=-1, center=False),
        ),
    ],
    ids=["group5", "group2", "instance", "layer", "layer_hwc", "group_noscale", "layer_nocenter"],
)
def test_matches_keras_builtin(ours, reference):
    mine, theirs = ours(), reference()
    _copy_random_weights(mine, theirs)
    x = _random_input()
    diff = np.abs(np.asarray(mine(x)) - np.asarray(theirs(x))).max()
    assert diff <= 1e-5


def test_group_normalization_against_hand_computed_values():
    # One sample, 1x2 spatial, 4 channels in 2 groups; gamma/beta per channel.
    x = np.array([[[[1.0, 3.0, 10.0, 10.0], [5.0, 7.0, 20.0, 40.0]]]], dtype="float32")
    layer = GroupNormalization(groups=2, epsilon=1e-3)
    layer.build(x.shape)
    layer.gamma.assign([1.0, 2.0, 1.0, 1.0])
    layer.beta.assign([0.0, 0.0, 0.0, 5.0])
    group0 = np.array([1.0, 3.0, 5.0, 7.0])  # mean 4, var 5
    group1 = np.array([10.0, 10.0, 20.0, 40.0])  # mean 20, var 150
    z0 = (group0 - 4.0) / np.sqrt(5.0 + 1e-3)
    z1 = (group1 - 20.0) / np.sqrt(150.0 + 1e-3)
    expected = np.array(
        [[[[z0[0], 2 * z0[1], z1[0], z1[1] + 5], [z0[2], 2 * z0[3], z1[2], z1[3] + 5]]]]
    )
    np.testing.assert_allclose(np.asarray(layer(x)), expected, atol=1e-5)


def test_instance_and_layer_normalization_hand_computed():
    x = np.array([[[[1.0, 2.0], [3.0, 6.0]]]], dtype="float32")  # (1, 1, 2, 2)
    instance = InstanceNormalization(epsilon=1e-3)
    # channel 0: [1, 3] mean 2 var 1; channel 1: [2, 6] mean 4 var 4
    expected_instance = np.array(
        [[[[-1 / np.sqrt(1.001), -2 / np.sqrt(4.001)], [1 / np.sqrt(1.001), 2 / np.sqrt(4.001)]]]]
    )
    np.testing.assert_allclose(np.asarray(instance(x)), expected_instance, atol=1e-5)
    layer = LayerNormalization(axis=-1, epsilon=1e-3)
    # position 0: [1, 2] mean 1.5 var .25; position 1: [3, 6] mean 4.5 var 2.25
    expected_layer = np.array(
        [
            [
                [
                    [-0.5 / np.sqrt(0.251), 0.5 / np.sqrt(0.251)],
                    [-1.5 / np.sqrt(2.251), 1.5 / np.sqrt(2.251)],
                ]
            ]
        ]
    )
    np.testing.assert_allclose(np.asarray(layer(x)), expected_layer, atol=1e-5)


def test_tutorial_calls_work_unchanged():
    x = _random_input((2, 26, 26, 10))
    layers = [
        GroupNormalization(groups=5, axis=3),
        InstanceNormalization(
            axis=3,
            center=True,
            scale=True,
            beta_initializer="random_uniform",
            gamma_initializer="random_uniform",
        ),
        LayerNormalization(axis=3, center=True, scale=True),
    ]
    for layer in layers:
        assert tuple(layer(x).shape) == x.shape


@pytest.mark.parametrize("shape", [(3, 8), (3, 5, 8), (3, 4, 5, 8), (3, 2, 3, 4, 8)])
def test_any_rank(shape):
    x = _random_input(shape)
    for layer in (GroupNormalization(4), InstanceNormalization(), LayerNormalization()):
        out = np.asarray(layer(x))
        assert out.shape == shape
        assert np.isfinite(out).all()


@pytest.mark.parametrize(
    "layer",
    [
        GroupNormalization(groups=5, axis=3, epsilon=1e-4, center=False, gamma_regularizer="l2"),
        InstanceNormalization(axis=3, beta_initializer="random_uniform", beta_constraint="non_neg"),
        LayerNormalization(axis=[1, 3], scale=False, beta_regularizer="l1"),
    ],
    ids=["group", "instance", "layer"],
)
def test_config_round_trip(layer):
    config = layer.get_config()
    clone = type(layer).from_config(config)
    assert clone.get_config() == config
    for key in ("axis", "epsilon", "center", "scale", "beta_initializer", "gamma_regularizer"):
        assert key in config


def test_model_saves_and_loads_with_identical_outputs(tmp_path):
    inputs = keras.Input((8, 8, 10))
    x = GroupNormalization(groups=5, axis=3)(inputs)
    x = InstanceNormalization(axis=3, gamma_initializer="random_uniform")(x)
    x = LayerNormalization(axis=[1, 2, 3])(x)
    model = keras.Model(inputs, x)
    for weight in model.weights:
        weight.assign(RNG.normal(0, 1, weight.shape).astype("float32"))
    path = tmp_path / "model.keras"
    model.save(path)
    restored = keras.saving.load_model(path)
    x = _random_input((3, 8, 8, 10))
    np.testing.assert_array_equal(np.asarray(model(x)), np.asarray(restored(x)))
    assert [type(layer).__name__ for layer in restored.layers[1:]] == [
        "GroupNormalization",
        "InstanceNormalization",
        "LayerNormalization",
    ]


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
@pytest.mark.parametrize(
    "make_layer",
    [lambda: GroupNormalization(5, axis=3), InstanceNormalization, LayerNormalization],
    ids=["group", "instance", "layer"],
)
def test_mixed_precision_large_inputs_stay_finite(policy, make_layer):
    keras.mixed_precision.set_global_policy(policy)
    layer = make_layer()
    # Magnitudes up to 1e4: a float16 sum of squares would overflow (max 65504).
    x = (RNG.uniform(-1, 1, SHAPE) * 1e4).astype("float32")
    out = layer(x)
    assert keras.backend.standardize_dtype(out.dtype) == policy.removeprefix("mixed_")
    values = np.asarray(keras.ops.cast(out, "float32"))
    assert np.isfinite(values).all()
    keras.mixed_precision.set_global_policy("float32")
    reference = make_layer()
    reference.build(SHAPE)
    reference.set_weights(layer.get_weights())
    # Statistics in float32: only the final cast to 16 bits loses precision.
    np.testing.assert_allclose(values, np.asarray(reference(x)), atol=0.05, rtol=0.01)
    assert layer.gamma.dtype == "float32"  # variables stay float32 under mixed precision


def test_runs_inside_xla_compiled_train_step():
    inputs = keras.Input((6, 6, 10))
    x = GroupNormalization(5)(inputs)
    x = InstanceNormalization()(x)
    x = LayerNormalization()(x)
    outputs = keras.layers.Dense(3, activation="softmax")(keras.layers.Flatten()(x))
    model = keras.Model(inputs, outputs)
    model.compile("adam", "sparse_categorical_crossentropy", jit_compile=True)
    x_batch, y_batch = _random_input((8, 6, 6, 10)), RNG.integers(0, 3, 8)
    first = model.train_on_batch(x_batch, y_batch)
    for _ in range(5):
        last = model.train_on_batch(x_batch, y_batch)
    assert np.isfinite(first) and last < first


@pytest.mark.parametrize(
    ("make", "shape", "message"),
    [
        (
            lambda: GroupNormalization(groups=3, axis=3),
            SHAPE,
            r"must divide the number of channels \(10\).*groups=3",
        ),
        (
            lambda: GroupNormalization(groups=20, axis=3),
            SHAPE,
            r"cannot be larger than the number of channels \(10\).*groups=20",
        ),
        (
            lambda: GroupNormalization(groups=0),
            SHAPE,
            r"`groups` must be a positive integer.*groups=0",
        ),
        (
            lambda: GroupNormalization(groups=-1),
            SHAPE,
            r"`groups` must be a positive integer.*groups=-1",
        ),
        (
            lambda: GroupNormalization(groups=2, axis=0),
            SHAPE,
            r"must not include the batch axis.*axis=0",
        ),
        (
            lambda: LayerNormalization(axis=[0, 3]),
            SHAPE,
            r"must not include the batch axis.*axis=\[0, 3\]",
        ),
        (
            lambda: InstanceNormalization(axis=-4),
            SHAPE,
            r"must not include the batch axis.*axis=-4",
        ),
        (lambda: LayerNormalization(axis=5), SHAPE, r"out of range.*axis=5"),
        (
            lambda: GroupNormalization(groups=2),
            (None, 4, None),
            r"Axis 2 of the input must have a known size",
        ),
        (
            lambda: GroupNormalization(epsilon=0),
            SHAPE,
            r"`epsilon` must be a positive number.*epsilon=0",
        ),
        (lambda: LayerNormalization(axis="x"), SHAPE, r"`axis` must be an integer.*axis='x'"),
        (
            lambda: GroupNormalization(axis=[1, 2]),
            SHAPE,
            r"single integer channel axis.*axis=\[1, 2\]",
        ),
        (
            lambda: LayerNormalization(center="yes"),
            SHAPE,
            r"`center` must be True or False.*center='yes'",
        ),
    ],
    ids=[
        "groups_not_dividing",
        "groups_gt_channels",
        "groups_zero",
        "groups_negative",
        "group_batch_axis",
        "layer_batch_axis",
        "instance_batch_axis_negative",
        "axis_out_of_range",
        "unknown_channels",
        "epsilon",
        "axis_type",
        "group_axis_list",
        "center_type",
    ],
)
def test_argument_errors_name_argument_and_value(make, shape, message):
    with pytest.raises(ValueError, match=message):
        make().build(shape)
