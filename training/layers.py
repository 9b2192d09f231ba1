"""Group, instance and layer normalization for Keras 3, written with `keras.ops`.

tensorflow-addons, whose layers the original tutorial used, is end-of-life and does not run on
Keras 3, so we own these three. They share one implementation of what matters on a GPU:

* Statistics are computed in float32 when the compute dtype is float16 or bfloat16. A float16
  sum of squares overflows for activations above ~256, which turns the variance into inf/NaN.
* The affine step is fused: ``y = x * a + b`` with ``a = gamma * rsqrt(var + eps)`` and
  ``b = beta - mean * a`` computed on the small per-group tensors, so the full-size activation
  sees one multiply and one add. XLA fuses that into one kernel and the exported ONNX graph
  stays lean.
* Shapes come from `keras.ops.shape` at run time, so one trace serves every batch size, under
  `jit_compile=True` as well.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras
from keras import constraints, initializers, ops, regularizers

_PACKAGE = "mnist_normalization"
_LOW_PRECISION = ("float16", "bfloat16")


class _FusedAffineNormalization(keras.layers.Layer):
    """Shared weights, float32 statistics and fused affine step of the three layers.

    Subclasses decide which axes carry parameters (`_parameter_axes`), how the input is
    grouped before the statistics (`_group`) and which axes the statistics reduce over.
    """

    def __init__(
        self,
        axis: int | Sequence[int] = -1,
        epsilon: float = 1e-3,
        center: bool = True,
        scale: bool = True,
        beta_initializer: Any = "zeros",
        gamma_initializer: Any = "ones",
        beta_regularizer: Any = None,
        gamma_regularizer: Any = None,
        beta_constraint: Any = None,
        gamma_constraint: Any = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if not isinstance(epsilon, int | float) or isinstance(epsilon, bool) or epsilon <= 0:
            raise ValueError(f"`epsilon` must be a positive number. Received: epsilon={epsilon!r}")
        for name, value in (("center", center), ("scale", scale)):
            if not isinstance(value, bool):
                raise ValueError(f"`{name}` must be True or False. Received: {name}={value!r}")
        self.axis = _validate_axis(axis)
        self.epsilon = float(epsilon)
        self.center = center
        self.scale = scale
        self.beta_initializer = initializers.get(beta_initializer)
        self.gamma_initializer = initializers.get(gamma_initializer)
        self.beta_regularizer = regularizers.get(beta_regularizer)
        self.gamma_regularizer = regularizers.get(gamma_regularizer)
        self.beta_constraint = constraints.get(beta_constraint)
        self.gamma_constraint = constraints.get(gamma_constraint)
        self.supports_masking = True

    # -- shape checks and weights -------------------------------------------------------------

    def build(self, input_shape: tuple[int | None, ...]) -> None:
        rank = len(input_shape)
        self._axes = _resolve_axes(self.axis, rank, input_shape)
        for axis in self._axes:
            if input_shape[axis] is None:
                raise ValueError(
                    f"Axis {axis} of the input must have a known size (the channel dimension), "
                    f"but the layer received an input with shape {input_shape}. "
                    "Give the model an Input with a fixed size on that axis."
                )
        self._rank = rank
        self._check_axes(input_shape)
        param_shape = tuple(input_shape[axis] for axis in self._axes)
        self.gamma = self._add_affine_weight("gamma", param_shape, self.scale)
        self.beta = self._add_affine_weight("beta", param_shape, self.center)
        self.input_spec = keras.layers.InputSpec(
            ndim=rank, axes={axis: input_shape[axis] for axis in self._axes}
        )

    def _add_affine_weight(self, name: str, shape: tuple[int, ...], enabled: bool) -> Any:
        if not enabled:
            return None
        return self.add_weight(
            name=name,
            shape=shape,
            initializer=getattr(self, f"{name}_initializer"),
            regularizer=getattr(self, f"{name}_regularizer"),
            constraint=getattr(self, f"{name}_constraint"),
        )

    def _check_axes(self, input_shape: tuple[int | None, ...]) -> None:
        """Subclass hook for argument checks that need the input shape."""

    # -- forward pass ---------------------------------------------------------------------------

    def call(self, inputs: Any) -> Any:
        stats_dtype = "float32" if self.compute_dtype in _LOW_PRECISION else self.compute_dtype
        x = _cast(inputs, stats_dtype)
        grouped = self._group(x)
        mean, variance = ops.moments(grouped, axes=self._reduction_axes(grouped), keepdims=True)
        return _cast(self._normalize(x, mean, variance), self.compute_dtype)

    def _parameter_shape(self) -> list[int]:
        """Shape that broadcasts a gamma/beta-shaped tensor against the (ungrouped) input."""
        shape = [1] * self._rank
        for axis in self._axes:
            shape[axis] = self.input_spec.axes[axis]
        return shape

    def _parameter(self, weight: Any, dtype: str) -> Any:
        return ops.reshape(_cast(weight, dtype), self._parameter_shape())

    def _group(self, x: Any) -> Any:
        return x

    def _reduction_axes(self, grouped: Any) -> list[int]:
        raise NotImplementedError

    def _normalize(self, x: Any, mean: Any, variance: Any) -> Any:
        raise NotImplementedError

    def compute_output_shape(self, input_shape: tuple[int | None, ...]) -> tuple[int | None, ...]:
        return input_shape

    def get_config(self) -> dict[str, Any]:
        config = {
            "axis": self.axis,
            "epsilon": self.epsilon,
            "center": self.center,
            "scale": self.scale,
            "beta_initializer": initializers.serialize(self.beta_initializer),
            "gamma_initializer": initializers.serialize(self.gamma_initializer),
            "beta_regularizer": regularizers.serialize(self.beta_regularizer),
            "gamma_regularizer": regularizers.serialize(self.gamma_regularizer),
            "beta_constraint": constraints.serialize(self.beta_constraint),
            "gamma_constraint": constraints.serialize(self.gamma_constraint),
        }
        return {**super().get_config(), **config}


@keras.saving.register_keras_serializable(package=_PACKAGE)
class GroupNormalization(_FusedAffineNormalization):
    """Group normalization (Wu & He, 2018): channels split into `groups`, each normalized
    over its channels and all non-batch axes.

    Args:
        groups: number of groups, 1 <= groups <= channels, dividing the channel count.
        axis: the channel axis (an int; never the batch axis 0).
        epsilon, center, scale, *_initializer, *_regularizer, *_constraint: as in
            `keras.layers.GroupNormalization`.
    """

    def __init__(self, groups: int = 32, axis: int = -1, **kwargs: Any) -> None:
        if not isinstance(groups, int) or isinstance(groups, bool) or groups < 1:
            raise ValueError(
                f"`groups` must be a positive integer (1 <= groups <= channels). "
                f"Received: groups={groups!r}"
            )
        if not isinstance(axis, int) or isinstance(axis, bool):
            raise ValueError(
                f"`axis` must be a single integer channel axis. Received: axis={axis!r}"
            )
        super().__init__(axis=axis, **kwargs)
        self.groups = groups

    def _check_axes(self, input_shape: tuple[int | None, ...]) -> None:
        channels = input_shape[self._axes[0]]
        if self.groups > channels:
            raise ValueError(
                f"`groups` ({self.groups}) cannot be larger than the number of channels "
                f"({channels}) on axis {self.axis} of input shape {input_shape}. "
                f"Received: groups={self.groups}"
            )
        if channels % self.groups:
            raise ValueError(
                f"`groups` ({self.groups}) must divide the number of channels ({channels}) on "
                f"axis {self.axis} of input shape {input_shape}. Received: groups={self.groups}"
            )

    def _group(self, x: Any) -> Any:
        # (..., C, ...) -> (..., groups, C // groups, ...): the statistics then reduce over every
        # axis but the batch and the group axis.
        channel_axis = self._axes[0]
        channels = self.input_spec.axes[channel_axis]
        dims = list(ops.shape(x))
        dims[channel_axis : channel_axis + 1] = [self.groups, channels // self.groups]
        return ops.reshape(x, dims)

    def _reduction_axes(self, grouped: Any) -> list[int]:
        group_axis = self._axes[0]
        return [a for a in range(1, len(grouped.shape)) if a != group_axis]

    def _normalize(self, x: Any, mean: Any, variance: Any) -> Any:
        # a = gamma * rsqrt(var + eps) and b = beta - mean * a are built per (sample, channel),
        # a few numbers per sample, so the full activation sees a single multiply-add.
        gamma = (
            self._parameter(self.gamma, x.dtype)
            if self.gamma is not None
            else ops.ones(self._parameter_shape(), dtype=x.dtype)
        )
        # (N, ..., groups, 1, ...) * (1, ..., groups, C // groups, ...)
        multiplier = ops.rsqrt(variance + self.epsilon) * self._group(gamma)
        offset = -mean * multiplier
        if self.beta is not None:
            offset = offset + self._group(self._parameter(self.beta, x.dtype))
        return x * self._per_channel(multiplier) + self._per_channel(offset)

    def _per_channel(self, grouped_stat: Any) -> Any:
        """(N, ..., groups, C // groups, ...) -> (N, 1, ..., C, ...), broadcastable to the input."""
        shape = self._parameter_shape()
        shape[0] = ops.shape(grouped_stat)[0]
        return ops.reshape(grouped_stat, shape)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "groups": self.groups}


@keras.saving.register_keras_serializable(package=_PACKAGE)
class InstanceNormalization(GroupNormalization):
    """Instance normalization: each channel of each sample normalized over its spatial axes
    (group normalization with one group per channel)."""

    def __init__(self, axis: int = -1, **kwargs: Any) -> None:
        kwargs.pop("groups", None)  # present in configs saved by GroupNormalization.get_config
        super().__init__(groups=1, axis=axis, **kwargs)

    def build(self, input_shape: tuple[int | None, ...]) -> None:
        channel_axis = _resolve_axes(self.axis, len(input_shape), input_shape)[0]
        if input_shape[channel_axis] is not None:
            self.groups = input_shape[channel_axis]
        super().build(input_shape)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.pop("groups")
        return config


@keras.saving.register_keras_serializable(package=_PACKAGE)
class LayerNormalization(_FusedAffineNormalization):
    """Layer normalization (Ba et al., 2016): each sample normalized over the axes in `axis`,
    with one gamma/beta entry per position along those axes (as `keras.layers.LayerNormalization`).
    """

    def _reduction_axes(self, grouped: Any) -> list[int]:
        return list(self._axes)

    def _normalize(self, x: Any, mean: Any, variance: Any) -> Any:
        # gamma/beta vary along the normalized axes, so folding them into the statistics would
        # build full-size tensors: standardize with a fused multiply-add, then apply the affine.
        inverse_std = ops.rsqrt(variance + self.epsilon)
        outputs = x * inverse_std + (-mean * inverse_std)
        if self.gamma is not None:
            outputs = outputs * self._parameter(self.gamma, x.dtype)
        if self.beta is not None:
            outputs = outputs + self._parameter(self.beta, x.dtype)
        return outputs


def _validate_axis(axis: int | Sequence[int]) -> int | list[int]:
    if isinstance(axis, int) and not isinstance(axis, bool):
        return axis
    if (
        isinstance(axis, Sequence)
        and axis
        and all(isinstance(a, int) and not isinstance(a, bool) for a in axis)
    ):
        return list(axis)
    raise ValueError(
        f"`axis` must be an integer or a non-empty list of integers. Received: axis={axis!r}"
    )


def _resolve_axes(
    axis: int | list[int], rank: int, input_shape: tuple[int | None, ...]
) -> list[int]:
    """Turn `axis` into sorted non-negative axes, rejecting the batch axis and out-of-range ones."""
    requested = [axis] if isinstance(axis, int) else axis
    resolved = []
    for a in requested:
        if not -rank <= a < rank:
            raise ValueError(
                f"`axis` {a} is out of range for an input of rank {rank} (shape {input_shape}). "
                f"Received: axis={axis!r}"
            )
        a %= rank
        if a == 0:
            raise ValueError(
                f"`axis` must not include the batch axis 0: normalizing across samples is batch "
                f"normalization. Use the channel axis (e.g. -1). Received: axis={axis!r}"
            )
        resolved.append(a)
    return sorted(set(resolved))


def _cast(x: Any, dtype: str) -> Any:
    return x if keras.backend.standardize_dtype(x.dtype) == dtype else ops.cast(x, dtype)
