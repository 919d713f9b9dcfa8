"""Pieces shared by the model zoo: PyTorch-matching initialisers, channel shuffle, the head.

Initialisers reproduce the reference (PyTorch) definitions:
- `kaiming_normal_fan_out`: N(0, 2 / (k·k·C_out)), i.e. `kaiming_normal_(mode='fan_out')`.
- `torch_default_kernel_init`: U(±1/√fan_in), PyTorch's default for `Conv2d` and `Linear` weights
  (`kaiming_uniform_(a=√5)`).
- `torch_default_bias_init(fan_in)`: U(±1/√fan_in), PyTorch's default bias of `Linear`.
- `classifier_normal_init`: N(0, 0.01²), used by the RepDistiller VGG and MobileNetV2 heads.
"""

import math
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxkd import precision

Initializer = Callable[..., jax.Array]

kaiming_normal_fan_out: Initializer = nn.initializers.variance_scaling(2.0, "fan_out", "normal")
torch_default_kernel_init: Initializer = nn.initializers.variance_scaling(
    1.0 / 3.0, "fan_in", "uniform")
classifier_normal_init: Initializer = nn.initializers.normal(stddev=0.01)


def torch_default_bias_init(fan_in: int) -> Initializer:
  """U(±1/√fan_in), the default bias of a PyTorch `Linear` with `fan_in` inputs."""
  bound = 1.0 / math.sqrt(fan_in)

  def init(key: jax.Array, shape: tuple[int, ...], dtype: Any = jnp.float32) -> jax.Array:
    return jax.random.uniform(key, shape, dtype, -bound, bound)

  return init


def channel_shuffle(x: jax.Array, groups: int) -> jax.Array:
  """ShuffleNet channel shuffle on NHWC: channels (g, C/g) are transposed to (C/g, g)."""
  *spatial, channels = x.shape
  x = x.reshape(*spatial, groups, channels // groups)
  return jnp.swapaxes(x, -1, -2).reshape(*spatial, channels)


def pooled_classifier(feature_map: jax.Array, num_classes: int,
                      kernel_init: Initializer = torch_default_kernel_init,
                      bias_init: Initializer | None = None) -> jax.Array:
  """logits = classifier(mean(feature_map, axis=(1, 2))), in full precision
  (`jaxkd.precision`: float32, float64 under jax_enable_x64).

  Must be called from the top-level module's compact `__call__`, so that the Dense lands
  at `params['classifier']`. `bias_init=None` selects PyTorch's default Linear bias.
  """
  pooled = jnp.mean(feature_map.astype(precision.full_precision()), axis=(1, 2))
  if bias_init is None:
    bias_init = torch_default_bias_init(pooled.shape[-1])
  classifier = nn.Dense(num_classes, dtype=precision.full_precision(),
                        param_dtype=precision.full_precision(),
                        kernel_init=kernel_init, bias_init=bias_init, name="classifier")
  return classifier(pooled)
