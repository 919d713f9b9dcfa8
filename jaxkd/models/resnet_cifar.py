"""CIFAR ResNets (He et al. 2016) as defined by RepDistiller / mdistiller / SimKD `resnet.py`.

A 3×3 stem of `widths[0]` channels, then three stages of (depth − 2) / 6 basic blocks with
`widths[1:]` channels and strides 1, 2, 2. `resnet8x4`/`resnet32x4` use widths (32, 64, 128, 256),
`resnet38x2`/`resnet110x2` (SimKD) use (16, 32, 64, 128). On 32×32 inputs the feature map is 8×8.

Init as the reference: convolutions kaiming-normal (fan_out), BN γ=1 β=0, and the classifier with
PyTorch's default Linear init.
"""

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxkd.models.common import kaiming_normal_fan_out, pooled_classifier
from jaxkd.models.layers import ModuleDef, make_batch_norm, make_conv


class BasicBlock(nn.Module):
  """relu(bn2(conv3x3(relu(bn1(conv3x3(x))))) + shortcut(x)).

  The shortcut is the identity, or a strided 1×1 conv + BN when the shape changes.
  """
  features: int
  strides: int
  conv: ModuleDef
  norm: ModuleDef

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    residual = x
    y = self.conv(self.features, (3, 3), strides=self.strides, padding=1, name="conv1")(x)
    y = nn.relu(self.norm(name="bn1")(y))
    y = self.conv(self.features, (3, 3), padding=1, name="conv2")(y)
    y = self.norm(name="bn2")(y)
    if self.strides != 1 or x.shape[-1] != self.features:
      residual = self.conv(self.features, (1, 1), strides=self.strides, padding=0,
                           name="downsample_conv")(x)
      residual = self.norm(name="downsample_bn")(residual)
    return nn.relu(y + residual)


class CifarResNet(nn.Module):
  """Basic-block CIFAR ResNet of depth 6n + 2; returns (8×8 feature map, logits) on 32×32 inputs."""
  depth: int
  widths: Sequence[int]
  num_classes: int
  dtype: Any = jnp.float32
  conv_impl: str = "auto"

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> tuple[jax.Array, jax.Array]:
    if (self.depth - 2) % 6:
      raise ValueError(f"CIFAR ResNet depth must be 6n + 2, got {self.depth}")
    blocks_per_stage = (self.depth - 2) // 6
    conv = make_conv(self.dtype, self.conv_impl, use_bias=False, kernel_init=kaiming_normal_fan_out)
    norm = make_batch_norm(train, self.dtype)
    x = conv(self.widths[0], (3, 3), padding=1, name="conv1")(x)
    x = nn.relu(norm(name="bn1")(x))
    for stage, (features, stride) in enumerate(zip(self.widths[1:], (1, 2, 2))):
      for index in range(blocks_per_stage):
        x = BasicBlock(features, stride if index == 0 else 1, conv, norm,
                       name=f"layer{stage + 1}_{index}")(x)
    return x, pooled_classifier(x, self.num_classes)
