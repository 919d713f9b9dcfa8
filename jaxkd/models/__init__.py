"""The model zoo: CIFAR KD networks (RepDistiller/mdistiller/SimKD), ImageNet ResNets, digits CNNs.

Every model is a flax.linen module called as `module.apply(variables, x, train=...)` on NHWC
inputs and returning `(feature, logits)`:
- `feature` (B, H, W, C), the distillation feature: the last spatial map of the backbone, the
  map the reference code's `forward(is_feat=True)` returns as `feat[-2]` (the one SimKD and
  ATSC project). CIFAR ResNets: the last stage's output (post-ReLU); ImageNet ResNets and
  `resnetv2`: layer4's output; VGG: the last block's output (post-ReLU, before the average
  pool); ShuffleV1: the last stage's output; MobileNetV2: the last inverted-residual block's
  output; ShuffleV2: the last stage's output. WRN: relu(bn(last block)), the map its
  classifier pools (RepDistiller's `feat[-2]` is the last block's output before that BN-ReLU;
  the SimKD/ATSC code has no WRN, and a WRN teacher's classifier must read its feature).
- `logits`, float32, from the top-level Dense `params['classifier']` on the global average of
  the model's last map. For most models that map is `feature` itself:
  `logits = classifier(mean(feature, axis=(1, 2)))`. MobileNetV2 and ShuffleV2 put a 1×1
  conv-BN-ReLU head (`conv2`, `bn2`) between them, as the reference does; their class sets
  `feature_feeds_classifier = False` (`feature_feeds_classifier(name)` reads it), and such a
  model cannot be the teacher of SimKD/ATSC, which reuse its classifier on a projected feature.

Names follow the reference code bases. `ResNet18/34/50` are torchvision's ImageNet networks;
the CIFAR `resnetv2` networks that mdistiller also calls `ResNet18`/`ResNet50` are registered as
`ResNet18_cifar`/`ResNet50_cifar`. `MobileNetV2` is the width-0.5 `mobile_half` of the papers.
"""

import functools
from typing import Any, Callable

import flax.linen as nn
import jax.numpy as jnp

from jaxkd.models.mobilenet_v2 import MobileNetV2
from jaxkd.models.resnet_cifar import BasicBlock, CifarResNet
from jaxkd.models.resnet_imagenet import Bottleneck, ResNet
from jaxkd.models.shufflenet_v1 import ShuffleNetV1
from jaxkd.models.shufflenet_v2 import SHUFFLE_V2_CHANNELS, ShuffleNetV2
from jaxkd.models.small_cnn import SmallCNN
from jaxkd.models.vgg import VGG, VGG_CONFIGS
from jaxkd.models.wide_resnet import WideResNet
from jaxkd.registry import Registry

ModelFactory = Callable[..., nn.Module]

MODELS: Registry[ModelFactory] = Registry("model")


def _register(name: str, module_class: type[nn.Module], **architecture: Any) -> None:
  MODELS.register(name)(functools.partial(module_class, **architecture))


CIFAR_RESNETS = {  # name: (depth, stage widths)
    "resnet8": (8, (16, 16, 32, 64)),
    "resnet14": (14, (16, 16, 32, 64)),
    "resnet20": (20, (16, 16, 32, 64)),
    "resnet32": (32, (16, 16, 32, 64)),
    "resnet38": (38, (16, 16, 32, 64)),
    "resnet44": (44, (16, 16, 32, 64)),
    "resnet56": (56, (16, 16, 32, 64)),
    "resnet110": (110, (16, 16, 32, 64)),
    "resnet38x2": (38, (16, 32, 64, 128)),
    "resnet110x2": (110, (16, 32, 64, 128)),
    "resnet8x4": (8, (32, 64, 128, 256)),
    "resnet32x4": (32, (32, 64, 128, 256)),
}
WIDE_RESNETS = {f"wrn_{depth}_{widen}": (depth, widen)  # name: (depth, widen factor)
                for depth, widen in ((16, 1), (16, 2), (40, 1), (40, 2))}


def _register_zoo() -> None:
  """Registers every architecture of the zoo under its reference name."""
  for name, (depth, widths) in CIFAR_RESNETS.items():
    _register(name, CifarResNet, depth=depth, widths=widths)
  for name, (depth, widen_factor) in WIDE_RESNETS.items():
    _register(name, WideResNet, depth=depth, widen_factor=widen_factor)
  for name, blocks in VGG_CONFIGS.items():
    _register(name, VGG, blocks=blocks)
  _register("MobileNetV2", MobileNetV2, width=0.5)
  _register("MobileNetV2_1_0", MobileNetV2, width=1.0)
  _register("ShuffleV1", ShuffleNetV1)
  _register("ShuffleV2", ShuffleNetV2, channels=SHUFFLE_V2_CHANNELS["1.0"])
  _register("ShuffleV2_1_5", ShuffleNetV2, channels=SHUFFLE_V2_CHANNELS["1.5"])
  _register("ResNet18", ResNet, stage_sizes=(2, 2, 2, 2), block=BasicBlock)
  _register("ResNet34", ResNet, stage_sizes=(3, 4, 6, 3), block=BasicBlock)
  _register("ResNet50", ResNet, stage_sizes=(3, 4, 6, 3), block=Bottleneck)
  _register("ResNet18_cifar", ResNet, stage_sizes=(2, 2, 2, 2), block=BasicBlock, cifar_stem=True)
  _register("ResNet50_cifar", ResNet, stage_sizes=(3, 4, 6, 3), block=Bottleneck, cifar_stem=True)
  _register("cnn_small", SmallCNN, widths=(16, 32, 32), strides=(1, 2, 1))
  _register("cnn_large", SmallCNN, widths=(32, 64, 64, 128), strides=(1, 2, 1, 2))


_register_zoo()


def create_model(name: str, num_classes: int, *, dtype: Any = jnp.float32,
                 conv_impl: str = "auto") -> nn.Module:
  """The zoo model `name` with `num_classes` outputs, computing in `dtype` (params float32).

  Raises:
    ValueError: `name` is not registered (the message lists the valid names).
  """
  return MODELS.get(name)(num_classes=num_classes, dtype=dtype, conv_impl=conv_impl)


def feature_feeds_classifier(name: str) -> bool:
  """Whether model `name`'s logits are its classifier on the global average of its feature.

  False for the models with a head conv between the two (class attribute
  `feature_feeds_classifier = False`), True for every other model.

  Raises:
    ValueError: `name` is not registered (the message lists the valid names).
  """
  return getattr(MODELS.get(name).func, "feature_feeds_classifier", True)


def model_names() -> list[str]:
  """All registered model names, sorted."""
  return MODELS.names()
