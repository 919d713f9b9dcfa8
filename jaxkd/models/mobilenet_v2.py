"""CIFAR MobileNetV2 as defined by RepDistiller / mdistiller / SimKD `mobilenetv2.py`.

The zoo's `MobileNetV2` is the reference `mobile_half`: expansion T = 6 and width multiplier 0.5
(the KD papers' "MobileNetV2" student); `MobileNetV2_1_0` is SimKD's `mobile_half_double`
(width 1.0). A 3×3/2 stem, inverted residual stages (t, c, n, s) =
(1,16,1,1) (T,24,2,1) (T,32,3,2) (T,64,4,2) (T,96,3,1) (T,160,3,2) (T,320,1,1) with channels
int(c·width), then a head: a 1×1 conv to 1280 channels + BN + ReLU, global average pooling and
a single linear classifier. As in the reference, the first block keeps its 1×1 expansion conv
even at t = 1.

The returned feature is the last inverted-residual block's output, the reference's `feat[-2]`
(2×2 on 32×32 inputs; 160 channels at width 0.5, 320 at width 1.0), which SimKD and ATSC
distill; the head conv comes after it, so `feature_feeds_classifier` is False.

Init as the reference: convolutions N(0, 2/(k·k·C_out)), BN γ=1 β=0, classifier N(0, 0.01²)
with zero bias.
"""

from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxkd.models.common import classifier_normal_init, kaiming_normal_fan_out, pooled_classifier
from jaxkd.models.layers import ModuleDef, make_batch_norm, make_conv

LAST_CHANNELS = 1280


class InvertedResidual(nn.Module):
  """1×1 expand-BN-ReLU, 3×3 depthwise-BN-ReLU, 1×1 project-BN; identity added when shapes allow."""
  features: int
  strides: int
  expand_ratio: int
  conv: ModuleDef
  norm: ModuleDef

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    hidden = x.shape[-1] * self.expand_ratio
    y = self.conv(hidden, (1, 1), padding=0, name="expand_conv")(x)
    y = nn.relu(self.norm(name="expand_bn")(y))
    y = self.conv(hidden, (3, 3), strides=self.strides, padding=1, feature_group_count=hidden,
                  name="depthwise_conv")(y)
    y = nn.relu(self.norm(name="depthwise_bn")(y))
    y = self.conv(self.features, (1, 1), padding=0, name="project_conv")(y)
    y = self.norm(name="project_bn")(y)
    if self.strides == 1 and x.shape[-1] == self.features:
      return x + y
    return y


class MobileNetV2(nn.Module):
  """CIFAR MobileNetV2 with expansion `expand_ratio` and width multiplier `width`.

  Returns (feature, logits): the last block's output, and the classifier on the global
  average of the conv2-bn2-ReLU head that follows it.
  """
  feature_feeds_classifier: ClassVar[bool] = False
  num_classes: int
  width: float = 0.5
  expand_ratio: int = 6
  dtype: Any = jnp.float32
  conv_impl: str = "auto"

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> tuple[jax.Array, jax.Array]:
    conv = make_conv(self.dtype, self.conv_impl, use_bias=False, kernel_init=kaiming_normal_fan_out)
    norm = make_batch_norm(train, self.dtype)
    t = self.expand_ratio
    stages = ((1, 16, 1, 1), (t, 24, 2, 1), (t, 32, 3, 2), (t, 64, 4, 2), (t, 96, 3, 1),
              (t, 160, 3, 2), (t, 320, 1, 1))
    x = conv(int(32 * self.width), (3, 3), strides=2, padding=1, name="conv1")(x)
    x = nn.relu(norm(name="bn1")(x))
    for stage, (expand_ratio, channels, num_blocks, stride) in enumerate(stages):
      for index in range(num_blocks):
        x = InvertedResidual(int(channels * self.width), stride if index == 0 else 1, expand_ratio,
                             conv, norm, name=f"blocks{stage}_{index}")(x)
    last_channels = int(LAST_CHANNELS * self.width) if self.width > 1.0 else LAST_CHANNELS
    head = conv(last_channels, (1, 1), padding=0, name="conv2")(x)
    head = nn.relu(norm(name="bn2")(head))
    return x, pooled_classifier(head, self.num_classes, kernel_init=classifier_normal_init,
                                bias_init=nn.initializers.zeros)
