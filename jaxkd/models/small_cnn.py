"""Small conv nets for the 8×8×1 digits quickstart, fast enough to train on CPU.

A stack of conv3×3-BN-ReLU layers (some with stride 2), global average pooling and a linear
`classifier`. `cnn_small` (widths 16, 32, 32; strides 1, 2, 1) has 14,458 parameters for 10
classes, `cnn_large` (widths 32, 64, 64, 128; strides 1, 2, 1, 2) 131,178.

Init: convolutions kaiming-normal (fan_out), BN γ=1 β=0, classifier PyTorch's default Linear init.
"""

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxkd.models.common import kaiming_normal_fan_out, pooled_classifier
from jaxkd.models.layers import make_batch_norm, make_conv


class SmallCNN(nn.Module):
  """conv3×3-BN-ReLU layers of `widths` channels and `strides` strides, then GAP + classifier."""
  widths: Sequence[int]
  strides: Sequence[int]
  num_classes: int
  dtype: Any = jnp.float32
  conv_impl: str = "auto"

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> tuple[jax.Array, jax.Array]:
    conv = make_conv(self.dtype, self.conv_impl, use_bias=False, kernel_init=kaiming_normal_fan_out)
    norm = make_batch_norm(train, self.dtype)
    for index, (features, stride) in enumerate(zip(self.widths, self.strides, strict=True)):
      x = conv(features, (3, 3), strides=stride, padding=1, name=f"conv{index}")(x)
      x = nn.relu(norm(name=f"bn{index}")(x))
    return x, pooled_classifier(x, self.num_classes)
