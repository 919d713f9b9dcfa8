"""CIFAR ShuffleNetV1 (Zhang et al. 2018) as defined by RepDistiller / mdistiller `ShuffleNetv1.py`.

`ShuffleV1`: 1×1 stem of 24 channels, three stages of 4, 8, 4 bottlenecks with 240, 480, 960
output channels and 3 groups. Each stage opens with a stride-2 unit whose output concatenates a
3×3/2 average-pooled shortcut. On 32×32 inputs the feature map is 4×4×960.

The reference leaves every layer at PyTorch's default init: convolutions and classifier
U(±1/√fan_in) (classifier bias too), BN γ=1 β=0.
"""

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxkd.models.common import channel_shuffle, pooled_classifier, torch_default_kernel_init
from jaxkd.models.layers import ModuleDef, make_batch_norm, make_conv

STEM_CHANNELS = 24


class ShuffleBottleneck(nn.Module):
  """Grouped 1×1-BN-ReLU, shuffle, depthwise 3×3-BN-ReLU, grouped 1×1-BN, shortcut, ReLU.

  `features` is the residual branch's width; a stride-2 unit concatenates the pooled input to it.
  The first 1×1 conv is ungrouped when the input is the 24-channel stem, as in the reference.
  """
  features: int
  strides: int
  groups: int
  conv: ModuleDef
  norm: ModuleDef

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    mid = self.features // 4
    first_groups = 1 if x.shape[-1] == STEM_CHANNELS else self.groups
    y = self.conv(mid, (1, 1), padding=0, feature_group_count=first_groups, name="conv1")(x)
    y = nn.relu(self.norm(name="bn1")(y))
    y = channel_shuffle(y, first_groups)
    y = self.conv(mid, (3, 3), strides=self.strides, padding=1, feature_group_count=mid,
                  name="conv2")(y)
    y = nn.relu(self.norm(name="bn2")(y))
    y = self.conv(self.features, (1, 1), padding=0, feature_group_count=self.groups,
                  name="conv3")(y)
    y = self.norm(name="bn3")(y)
    if self.strides == 2:
      shortcut = nn.avg_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)),
                             count_include_pad=True)
      return nn.relu(jnp.concatenate([y, shortcut], axis=-1))
    return nn.relu(y + x)


class ShuffleNetV1(nn.Module):
  """ShuffleNetV1: `stage_channels` outputs, `stage_blocks` units per stage, `groups` groups."""
  num_classes: int
  stage_channels: Sequence[int] = (240, 480, 960)
  stage_blocks: Sequence[int] = (4, 8, 4)
  groups: int = 3
  dtype: Any = jnp.float32
  conv_impl: str = "auto"

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> tuple[jax.Array, jax.Array]:
    conv = make_conv(self.dtype, self.conv_impl, use_bias=False,
                     kernel_init=torch_default_kernel_init)
    norm = make_batch_norm(train, self.dtype)
    x = conv(STEM_CHANNELS, (1, 1), padding=0, name="conv1")(x)
    x = nn.relu(norm(name="bn1")(x))
    for stage, (channels, num_blocks) in enumerate(zip(self.stage_channels, self.stage_blocks)):
      for index in range(num_blocks):
        strides = 2 if index == 0 else 1
        features = channels - x.shape[-1] if index == 0 else channels
        x = ShuffleBottleneck(features, strides, self.groups, conv, norm,
                              name=f"layer{stage + 1}_{index}")(x)
    return x, pooled_classifier(x, self.num_classes)
