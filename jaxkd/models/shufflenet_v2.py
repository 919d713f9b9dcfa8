"""CIFAR ShuffleNetV2 (Ma et al. 2018) as in RepDistiller / mdistiller / SimKD `ShuffleNetv2.py`.

A 1×1 stem of 24 channels, three stages (a stride-2 down unit, then 3, 7, 3 basic units), then a
head: 1×1 conv + BN + ReLU, global average pooling, a linear classifier. `ShuffleV2` is net
size 1 (116, 232, 464, 1024 channels), SimKD's `ShuffleV2_1_5` net size 1.5 (176, 352, 704, 1024).

The returned feature is the last stage's output, the reference's `feat[-2]` (4×4 on 32×32
inputs; 464 channels for `ShuffleV2`, 704 for `ShuffleV2_1_5`), which SimKD and ATSC distill;
the head conv comes after it, so `feature_feeds_classifier` is False.

The reference leaves every layer at PyTorch's default init: convolutions and classifier
U(±1/√fan_in) (classifier bias too), BN γ=1 β=0.
"""

from typing import Any, ClassVar, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxkd.models.common import channel_shuffle, pooled_classifier, torch_default_kernel_init
from jaxkd.models.layers import ModuleDef, make_batch_norm, make_conv

STEM_CHANNELS = 24
SHUFFLE_V2_CHANNELS: dict[str, tuple[int, int, int, int]] = {
    "1.0": (116, 232, 464, 1024),
    "1.5": (176, 352, 704, 1024),
}


class ShuffleV2Basic(nn.Module):
  """Split channels in half; 1×1-BN-ReLU, depthwise 3×3-BN, 1×1-BN-ReLU on the second half.

  The untouched first half and the branch are concatenated and channel-shuffled.
  """
  conv: ModuleDef
  norm: ModuleDef

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    split = x.shape[-1] // 2
    kept, branch = x[..., :split], x[..., split:]
    channels = branch.shape[-1]
    y = self.conv(channels, (1, 1), padding=0, name="conv1")(branch)
    y = nn.relu(self.norm(name="bn1")(y))
    y = self.conv(channels, (3, 3), padding=1, feature_group_count=channels, name="conv2")(y)
    y = self.norm(name="bn2")(y)
    y = self.conv(channels, (1, 1), padding=0, name="conv3")(y)
    y = nn.relu(self.norm(name="bn3")(y))
    return channel_shuffle(jnp.concatenate([kept, y], axis=-1), 2)


class ShuffleV2Down(nn.Module):
  """Two stride-2 branches of `features // 2` channels each, concatenated and shuffled."""
  features: int
  conv: ModuleDef
  norm: ModuleDef

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    in_channels, mid = x.shape[-1], self.features // 2
    left = self.conv(in_channels, (3, 3), strides=2, padding=1, feature_group_count=in_channels,
                     name="conv1")(x)
    left = self.norm(name="bn1")(left)
    left = self.conv(mid, (1, 1), padding=0, name="conv2")(left)
    left = nn.relu(self.norm(name="bn2")(left))
    right = self.conv(mid, (1, 1), padding=0, name="conv3")(x)
    right = nn.relu(self.norm(name="bn3")(right))
    right = self.conv(mid, (3, 3), strides=2, padding=1, feature_group_count=mid,
                      name="conv4")(right)
    right = self.norm(name="bn4")(right)
    right = self.conv(mid, (1, 1), padding=0, name="conv5")(right)
    right = nn.relu(self.norm(name="bn5")(right))
    return channel_shuffle(jnp.concatenate([left, right], axis=-1), 2)


class ShuffleNetV2(nn.Module):
  """ShuffleNetV2 with `channels` = (stage 1, stage 2, stage 3, head) widths.

  Returns (feature, logits): stage 3's output, and the classifier on the global average of
  the conv2-bn2-ReLU head that follows it.
  """
  feature_feeds_classifier: ClassVar[bool] = False
  num_classes: int
  channels: Sequence[int] = SHUFFLE_V2_CHANNELS["1.0"]
  stage_blocks: Sequence[int] = (3, 7, 3)
  dtype: Any = jnp.float32
  conv_impl: str = "auto"

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> tuple[jax.Array, jax.Array]:
    conv = make_conv(self.dtype, self.conv_impl, use_bias=False,
                     kernel_init=torch_default_kernel_init)
    norm = make_batch_norm(train, self.dtype)
    x = conv(STEM_CHANNELS, (1, 1), padding=0, name="conv1")(x)
    x = nn.relu(norm(name="bn1")(x))
    for stage, (features, num_blocks) in enumerate(zip(self.channels[:3], self.stage_blocks)):
      x = ShuffleV2Down(features, conv, norm, name=f"layer{stage + 1}_down")(x)
      for index in range(num_blocks):
        x = ShuffleV2Basic(conv, norm, name=f"layer{stage + 1}_{index}")(x)
    head = conv(self.channels[3], (1, 1), padding=0, name="conv2")(x)
    head = nn.relu(norm(name="bn2")(head))
    return x, pooled_classifier(head, self.num_classes)
