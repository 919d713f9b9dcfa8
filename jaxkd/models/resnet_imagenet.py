"""Four-stage ResNets: torchvision's ImageNet ResNet-18/34/50 and RepDistiller's CIFAR `resnetv2`.

torchvision stem: 7×7/2 conv (64) + BN + ReLU + 3×3/2 max pool; stages of widths 64, 128, 256, 512
with strides 1, 2, 2, 2; the bottleneck strides its 3×3 conv (ResNet v1.5). RepDistiller's
`resnetv2.py` (mdistiller's CIFAR `ResNet18`/`ResNet50`, teacher of the ResNet50→MobileNetV2 pair)
is the same network with a 3×3/1 stem and no max pool. All paddings are PyTorch's symmetric ones.

Init as torchvision: convolutions kaiming-normal (fan_out), BN γ=1 β=0, classifier PyTorch's
default.
"""

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxkd.models.common import kaiming_normal_fan_out, pooled_classifier
from jaxkd.models.layers import ModuleDef, make_batch_norm, make_conv

BOTTLENECK_EXPANSION = 4


class Bottleneck(nn.Module):
  """1×1 → 3×3 (strided) → 1×1 (4× `features`), each with BN; projected shortcut if reshaped."""
  features: int
  strides: int
  conv: ModuleDef
  norm: ModuleDef

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    out_features = self.features * BOTTLENECK_EXPANSION
    residual = x
    y = self.conv(self.features, (1, 1), padding=0, name="conv1")(x)
    y = nn.relu(self.norm(name="bn1")(y))
    y = self.conv(self.features, (3, 3), strides=self.strides, padding=1, name="conv2")(y)
    y = nn.relu(self.norm(name="bn2")(y))
    y = self.conv(out_features, (1, 1), padding=0, name="conv3")(y)
    y = self.norm(name="bn3")(y)
    if self.strides != 1 or x.shape[-1] != out_features:
      residual = self.conv(out_features, (1, 1), strides=self.strides, padding=0,
                           name="downsample_conv")(x)
      residual = self.norm(name="downsample_bn")(residual)
    return nn.relu(y + residual)


class ResNet(nn.Module):
  """ResNet with `stage_sizes` blocks per stage; `cifar_stem` selects RepDistiller's 3×3/1 stem."""
  stage_sizes: Sequence[int]
  block: type[nn.Module]
  num_classes: int
  cifar_stem: bool = False
  dtype: Any = jnp.float32
  conv_impl: str = "auto"

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> tuple[jax.Array, jax.Array]:
    conv = make_conv(self.dtype, self.conv_impl, use_bias=False, kernel_init=kaiming_normal_fan_out)
    norm = make_batch_norm(train, self.dtype)
    if self.cifar_stem:
      x = conv(64, (3, 3), padding=1, name="conv1")(x)
      x = nn.relu(norm(name="bn1")(x))
    else:
      x = conv(64, (7, 7), strides=2, padding=3, name="conv1")(x)
      x = nn.relu(norm(name="bn1")(x))
      x = nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
    for stage, num_blocks in enumerate(self.stage_sizes):
      for index in range(num_blocks):
        strides = 2 if stage > 0 and index == 0 else 1
        x = self.block(64 * 2**stage, strides, conv, norm, name=f"layer{stage + 1}_{index}")(x)
    return x, pooled_classifier(x, self.num_classes)
