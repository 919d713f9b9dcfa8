"""CIFAR VGGs with batch norm, as defined by RepDistiller / mdistiller `vgg.py` (`vgg*_bn`).

Five blocks of conv3×3(+bias)-BN-ReLU layers; 2×2 max pools follow blocks 0–2 (and block 3 only for
64×64 inputs), so a 32×32 input leaves a 4×4×512 feature map. The fully connected layers of the
ImageNet VGG are replaced by a single linear classifier, exactly as in the reference.

Init as the reference: convolutions N(0, 2/(k·k·C_out)) with zero bias, BN γ=1 β=0, classifier
N(0, 0.01²) with zero bias.
"""

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxkd.models.common import classifier_normal_init, kaiming_normal_fan_out, pooled_classifier
from jaxkd.models.layers import make_batch_norm, make_conv

VGG_CONFIGS: dict[str, tuple[tuple[int, ...], ...]] = {
    "vgg8": ((64,), (128,), (256,), (512,), (512,)),
    "vgg11": ((64,), (128,), (256, 256), (512, 512), (512, 512)),
    "vgg13": ((64, 64), (128, 128), (256, 256), (512, 512), (512, 512)),
    "vgg16": ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512)),
    "vgg19": ((64, 64), (128, 128), (256, 256, 256, 256), (512, 512, 512, 512),
              (512, 512, 512, 512)),
}


class VGG(nn.Module):
  """VGG-BN over `blocks` (channels per conv, per block); returns (last block's output, logits)."""
  blocks: Sequence[Sequence[int]]
  num_classes: int
  dtype: Any = jnp.float32
  conv_impl: str = "auto"

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> tuple[jax.Array, jax.Array]:
    conv = make_conv(self.dtype, self.conv_impl, use_bias=True, kernel_init=kaiming_normal_fan_out,
                     bias_init=nn.initializers.zeros)
    norm = make_batch_norm(train, self.dtype)
    pool_after_block3 = x.shape[1] == 64
    for block_index, block in enumerate(self.blocks):
      for layer_index, features in enumerate(block):
        name = f"block{block_index}_{layer_index}"
        x = conv(features, (3, 3), padding=1, name=f"{name}_conv")(x)
        x = nn.relu(norm(name=f"{name}_bn")(x))
      if block_index < 3 or (block_index == 3 and pool_after_block3):
        x = nn.max_pool(x, (2, 2), strides=(2, 2))
    return x, pooled_classifier(x, self.num_classes, kernel_init=classifier_normal_init,
                                bias_init=nn.initializers.zeros)
