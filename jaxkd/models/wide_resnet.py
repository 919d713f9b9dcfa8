"""Wide ResNets (Zagoruyko & Komodakis 2016) as defined by RepDistiller / mdistiller `wrn.py`.

WRN-d-k: a 3×3 stem of 16 channels, three stages of (d − 4) / 6 pre-activation blocks with
16k, 32k, 64k channels and strides 1, 2, 2, then BN + ReLU. On 32×32 inputs the feature map is 8×8.
The returned feature is after that BN + ReLU, the map the classifier pools; RepDistiller's
`feat[-2]` is the last block's output before it (the SimKD/ATSC code has no WRN).
Dropout is 0 in every zoo entry and is therefore left out.

Init as the reference: convolutions N(0, 2/(k·k·C_out)) (kaiming fan_out), BN γ=1 β=0, classifier
weight PyTorch's default with a zero bias.
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxkd.models.common import kaiming_normal_fan_out, pooled_classifier
from jaxkd.models.layers import ModuleDef, make_batch_norm, make_conv


class WideBasicBlock(nn.Module):
  """Pre-activation block: a = relu(bn1(x)); out = conv2(relu(bn2(conv1(a)))) + shortcut.

  The shortcut is x, or a strided 1×1 conv of a when the width changes.
  """
  features: int
  strides: int
  conv: ModuleDef
  norm: ModuleDef

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    activated = nn.relu(self.norm(name="bn1")(x))
    y = self.conv(self.features, (3, 3), strides=self.strides, padding=1, name="conv1")(activated)
    y = nn.relu(self.norm(name="bn2")(y))
    y = self.conv(self.features, (3, 3), padding=1, name="conv2")(y)
    if x.shape[-1] == self.features:
      return x + y
    shortcut = self.conv(self.features, (1, 1), strides=self.strides, padding=0,
                         name="shortcut_conv")(activated)
    return shortcut + y


class WideResNet(nn.Module):
  """WRN-`depth`-`widen_factor`; returns (relu(bn(last block)), logits)."""
  depth: int
  widen_factor: int
  num_classes: int
  dtype: Any = jnp.float32
  conv_impl: str = "auto"

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> tuple[jax.Array, jax.Array]:
    if (self.depth - 4) % 6:
      raise ValueError(f"WRN depth must be 6n + 4, got {self.depth}")
    blocks_per_stage = (self.depth - 4) // 6
    conv = make_conv(self.dtype, self.conv_impl, use_bias=False, kernel_init=kaiming_normal_fan_out)
    norm = make_batch_norm(train, self.dtype)
    x = conv(16, (3, 3), padding=1, name="conv1")(x)
    for stage, (width, stride) in enumerate(zip((16, 32, 64), (1, 2, 2))):
      for index in range(blocks_per_stage):
        x = WideBasicBlock(width * self.widen_factor, stride if index == 0 else 1, conv, norm,
                           name=f"block{stage + 1}_{index}")(x)
    x = nn.relu(norm(name="bn1")(x))
    return x, pooled_classifier(x, self.num_classes, bias_init=nn.initializers.zeros)
