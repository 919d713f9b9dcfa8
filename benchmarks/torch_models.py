"""PyTorch definitions of the zoo whose `state_dict()` keys are those of the published code.

Module and attribute names are chosen so that the keys, shapes and forward passes equal those
of the definitions the published checkpoints were trained with, and of jaxkd's zoo entries of
the same name (`jaxkd.torch_layout` maps between the two):

- CIFAR ResNets (RepDistiller / mdistiller `models/resnet.py`): `conv1`, `bn1`,
  `layer{1,2,3}.{i}.{conv1,bn1,conv2,bn2}`, `layer{s}.0.downsample.{0,1}`, `fc`.
- ImageNet ResNet-18/34/50 (torchvision `resnet.py`): the same names over four stages, a
  bottleneck adding `conv3`/`bn3`.
- CIFAR `ResNet18_cifar`/`ResNet50_cifar` (RepDistiller `resnetv2.py`): `shortcut.{0,1}`
  instead of `downsample`, `linear` instead of `fc`.
- WRNs (`wrn.py`): `conv1`, `block{1,2,3}.layer.{i}.{bn1,conv1,bn2,conv2,convShortcut}`, `bn1`,
  `fc`.
- VGGs (`vgg.py`): `block{b}.{3l}` conv (with bias) and `block{b}.{3l+1}` BN, `classifier`.
- MobileNetV2 (`mobilenetv2.py`): `conv1.{0,1}`, `blocks.{s}.{i}.conv.{0,1,3,4,6,7}`,
  `conv2.{0,1}`, `classifier.0`.
- ShuffleNetV1/V2 (`ShuffleNetv1.py`, `ShuffleNetv2.py`): `conv1`, `bn1`, `layer{s}.{i}.*`
  (V2: `layer{s}.0` is the down-sampling unit), V2's `conv2`/`bn2`, `linear`.

`forward` returns the logits; the models whose classifier pools their distillation feature
(CIFAR ResNets, WRNs, VGGs) also have `forward_features` → (feature map, logits), the map
jaxkd's zoo returns as `feature` (SimKD and ATSC project it). The global pooling is a mean over the last feature map, which
is what the references' fixed-size pools compute on the input size they are defined for.
Initialisation follows each reference. This module imports no jax.
"""

import functools
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from jaxkd import models
from jaxkd.models import vgg

# The architectures' hyperparameters are the zoo's (their parameter counts are pinned by
# tests/models/test_zoo.py); the modules below are written independently of jaxkd's.
CIFAR_RESNETS = models.CIFAR_RESNETS
WIDE_RESNETS = models.WIDE_RESNETS
VGG_CONFIGS = vgg.VGG_CONFIGS
BOTTLENECK_EXPANSION = 4
SHUFFLE_STEM_CHANNELS = 24


def _init_like_reference(model: nn.Module, *, classifier_std: float | None = None,
                         zero_classifier_bias: bool = False) -> None:
  """Convolutions N(0, 2 / (k·k·C_out)) (kaiming fan_out) with zero bias; the Linear weight
  N(0, classifier_std²) when given and its bias zero when asked; BN keeps γ = 1, β = 0."""
  for module in model.modules():
    if isinstance(module, nn.Conv2d):
      nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
      if module.bias is not None:
        nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Linear):
      if classifier_std is not None:
        nn.init.normal_(module.weight, 0.0, classifier_std)
      if zero_classifier_bias:
        nn.init.zeros_(module.bias)


def _conv_bn(in_channels: int, out_channels: int, stride: int = 1) -> nn.Sequential:
  """1×1 convolution + BN: the projection shortcut of the ResNets."""
  return nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                       nn.BatchNorm2d(out_channels))


def _channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
  """NCHW channels (g, C/g) transposed to (C/g, g)."""
  batch, channels, height, width = x.shape
  x = x.reshape(batch, groups, channels // groups, height, width)
  return x.transpose(1, 2).reshape(batch, channels, height, width)


def _global_mean(x: torch.Tensor) -> torch.Tensor:
  return x.mean(dim=(2, 3))


class _ResidualBlock(nn.Module):
  """A block whose shortcut is `x`, or a projection registered under `shortcut_name`."""

  def __init__(self, shortcut_name: str):
    super().__init__()
    self.shortcut_name = shortcut_name

  def add_projection(self, in_channels: int, out_channels: int, stride: int) -> None:
    if stride != 1 or in_channels != out_channels:
      self.add_module(self.shortcut_name, _conv_bn(in_channels, out_channels, stride))

  def residual(self, x: torch.Tensor) -> torch.Tensor:
    projection = self._modules.get(self.shortcut_name)
    return x if projection is None else projection(x)


class BasicBlock(_ResidualBlock):
  """relu(bn2(conv3x3(relu(bn1(conv3x3(x))))) + shortcut(x))."""
  expansion = 1

  def __init__(self, in_channels: int, features: int, stride: int,
               shortcut_name: str = "downsample"):
    super().__init__(shortcut_name)
    self.conv1 = nn.Conv2d(in_channels, features, 3, stride, 1, bias=False)
    self.bn1 = nn.BatchNorm2d(features)
    self.conv2 = nn.Conv2d(features, features, 3, 1, 1, bias=False)
    self.bn2 = nn.BatchNorm2d(features)
    self.add_projection(in_channels, features, stride)

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    y = F.relu(self.bn1(self.conv1(x)))
    y = self.bn2(self.conv2(y))
    return F.relu(y + self.residual(x))


class Bottleneck(_ResidualBlock):
  """1×1 → 3×3 (strided, ResNet v1.5) → 1×1 to 4× `features`, each with BN, + shortcut(x)."""
  expansion = BOTTLENECK_EXPANSION

  def __init__(self, in_channels: int, features: int, stride: int,
               shortcut_name: str = "downsample"):
    super().__init__(shortcut_name)
    out_channels = features * BOTTLENECK_EXPANSION
    self.conv1 = nn.Conv2d(in_channels, features, 1, bias=False)
    self.bn1 = nn.BatchNorm2d(features)
    self.conv2 = nn.Conv2d(features, features, 3, stride, 1, bias=False)
    self.bn2 = nn.BatchNorm2d(features)
    self.conv3 = nn.Conv2d(features, out_channels, 1, bias=False)
    self.bn3 = nn.BatchNorm2d(out_channels)
    self.add_projection(in_channels, out_channels, stride)

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    y = F.relu(self.bn1(self.conv1(x)))
    y = F.relu(self.bn2(self.conv2(y)))
    y = self.bn3(self.conv3(y))
    return F.relu(y + self.residual(x))


def _residual_stage(block: type[_ResidualBlock], in_channels: int, features: int,
                    num_blocks: int, stride: int, shortcut_name: str) -> nn.Sequential:
  """`num_blocks` blocks, the first one strided; `nn.Sequential` numbers them 0, 1, …"""
  blocks = []
  for index in range(num_blocks):
    blocks.append(block(in_channels, features, stride if index == 0 else 1, shortcut_name))
    in_channels = features * block.expansion
  return nn.Sequential(*blocks)


class CifarResNet(nn.Module):
  """RepDistiller's CIFAR ResNet: a 3×3 stem of widths[0], three stages of (depth − 2) / 6
  basic blocks with widths[1:] channels and strides 1, 2, 2, then `fc`."""

  def __init__(self, depth: int, widths: Sequence[int], num_classes: int):
    super().__init__()
    if (depth - 2) % 6:
      raise ValueError(f"CIFAR ResNet depth must be 6n + 2, got {depth}")
    blocks_per_stage = (depth - 2) // 6
    self.conv1 = nn.Conv2d(3, widths[0], 3, 1, 1, bias=False)
    self.bn1 = nn.BatchNorm2d(widths[0])
    self.layer1 = _residual_stage(BasicBlock, widths[0], widths[1], blocks_per_stage, 1,
                                  "downsample")
    self.layer2 = _residual_stage(BasicBlock, widths[1], widths[2], blocks_per_stage, 2,
                                  "downsample")
    self.layer3 = _residual_stage(BasicBlock, widths[2], widths[3], blocks_per_stage, 2,
                                  "downsample")
    self.fc = nn.Linear(widths[3], num_classes)
    _init_like_reference(self)

  def forward_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    feature = self.layer3(self.layer2(self.layer1(F.relu(self.bn1(self.conv1(x))))))
    return feature, self.fc(_global_mean(feature))

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    return self.forward_features(x)[1]


class ResNet(nn.Module):
  """Four-stage ResNet of widths 64·2^s: torchvision's ImageNet network (7×7/2 stem, max pool,
  `downsample`, `fc`), or with `cifar_stem` RepDistiller's `resnetv2.py` (3×3/1 stem, no pool,
  `shortcut`, `linear`)."""

  def __init__(self, block: type[_ResidualBlock], stage_sizes: Sequence[int], num_classes: int,
               cifar_stem: bool = False):
    super().__init__()
    self.cifar_stem = cifar_stem
    shortcut_name = "shortcut" if cifar_stem else "downsample"
    self.head_name = "linear" if cifar_stem else "fc"
    if cifar_stem:
      self.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
    else:
      self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
    self.bn1 = nn.BatchNorm2d(64)
    in_channels = 64
    for stage, num_blocks in enumerate(stage_sizes):
      features = 64 * 2**stage
      self.add_module(f"layer{stage + 1}", _residual_stage(
          block, in_channels, features, num_blocks, 1 if stage == 0 else 2, shortcut_name))
      in_channels = features * block.expansion
    self.add_module(self.head_name, nn.Linear(in_channels, num_classes))
    self.num_stages = len(stage_sizes)
    _init_like_reference(self)

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    x = F.relu(self.bn1(self.conv1(x)))
    if not self.cifar_stem:
      x = F.max_pool2d(x, 3, 2, 1)
    for stage in range(self.num_stages):
      x = self._modules[f"layer{stage + 1}"](x)
    return self._modules[self.head_name](_global_mean(x))


class WideBasicBlock(nn.Module):
  """Pre-activation block: a = relu(bn1(x)); conv2(relu(bn2(conv1(a)))) + (x or convShortcut(a)).

  The shortcut is the 1×1 convolution of `a` when the width changes, else `x` itself.
  """

  def __init__(self, in_channels: int, out_channels: int, stride: int):
    super().__init__()
    self.bn1 = nn.BatchNorm2d(in_channels)
    self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
    self.bn2 = nn.BatchNorm2d(out_channels)
    self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
    self.convShortcut = (  # pylint: disable=invalid-name  (the published key)
        nn.Conv2d(in_channels, out_channels, 1, stride, bias=False)
        if in_channels != out_channels else None)

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    activated = F.relu(self.bn1(x))
    y = self.conv2(F.relu(self.bn2(self.conv1(activated))))
    return (x if self.convShortcut is None else self.convShortcut(activated)) + y


class WideStage(nn.Module):
  """One WRN stage; its blocks live in `layer` (keys `block{s}.layer.{i}.*`)."""

  def __init__(self, in_channels: int, out_channels: int, num_blocks: int, stride: int):
    super().__init__()
    self.layer = nn.Sequential(*(
        WideBasicBlock(in_channels if index == 0 else out_channels, out_channels,
                       stride if index == 0 else 1) for index in range(num_blocks)))

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    return self.layer(x)


class WideResNet(nn.Module):
  """RepDistiller's WRN-depth-k: stem of 16, stages of 16k, 32k, 64k, then BN + ReLU, `fc`."""

  def __init__(self, depth: int, widen_factor: int, num_classes: int):
    super().__init__()
    if (depth - 4) % 6:
      raise ValueError(f"WRN depth must be 6n + 4, got {depth}")
    blocks_per_stage = (depth - 4) // 6
    widths = [16 * widen_factor, 32 * widen_factor, 64 * widen_factor]
    self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
    self.block1 = WideStage(16, widths[0], blocks_per_stage, 1)
    self.block2 = WideStage(widths[0], widths[1], blocks_per_stage, 2)
    self.block3 = WideStage(widths[1], widths[2], blocks_per_stage, 2)
    self.bn1 = nn.BatchNorm2d(widths[2])
    self.fc = nn.Linear(widths[2], num_classes)
    _init_like_reference(self, zero_classifier_bias=True)

  def forward_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    feature = F.relu(self.bn1(self.block3(self.block2(self.block1(self.conv1(x))))))
    return feature, self.fc(_global_mean(feature))

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    return self.forward_features(x)[1]


def _vgg_block(in_channels: int, widths: Sequence[int]) -> nn.Sequential:
  """conv3×3(+bias)-BN-ReLU per width, the last ReLU left out (applied by the caller)."""
  layers: list[nn.Module] = []
  for width in widths:
    layers += [nn.Conv2d(in_channels, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU()]
    in_channels = width
  return nn.Sequential(*layers[:-1])


class VGG(nn.Module):
  """RepDistiller's CIFAR VGG-BN: five blocks, 2×2 max pools after blocks 0–2 (and 3 on 64×64
  inputs), global average pool, one linear `classifier`."""

  def __init__(self, blocks: Sequence[Sequence[int]], num_classes: int):
    super().__init__()
    in_channels = 3
    for index, widths in enumerate(blocks):
      self.add_module(f"block{index}", _vgg_block(in_channels, widths))
      in_channels = widths[-1]
    self.num_blocks = len(blocks)
    self.classifier = nn.Linear(in_channels, num_classes)
    _init_like_reference(self, classifier_std=0.01, zero_classifier_bias=True)

  def forward_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    pool_after_block3 = x.shape[2] == 64
    for index in range(self.num_blocks):
      x = F.relu(self._modules[f"block{index}"](x))
      if index < 3 or (index == 3 and pool_after_block3):
        x = F.max_pool2d(x, 2, 2)
    return x, self.classifier(_global_mean(x))

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    return self.forward_features(x)[1]


class InvertedResidual(nn.Module):
  """`conv`: 1×1 expand-BN-ReLU, depthwise 3×3-BN-ReLU, 1×1 project-BN; + x when shapes allow."""

  def __init__(self, in_channels: int, out_channels: int, stride: int, expand_ratio: int):
    super().__init__()
    hidden = in_channels * expand_ratio
    self.use_residual = stride == 1 and in_channels == out_channels
    self.conv = nn.Sequential(
        nn.Conv2d(in_channels, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU(),
        nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False),
        nn.BatchNorm2d(hidden), nn.ReLU(),
        nn.Conv2d(hidden, out_channels, 1, bias=False), nn.BatchNorm2d(out_channels))

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    return x + self.conv(x) if self.use_residual else self.conv(x)


class MobileNetV2(nn.Module):
  """RepDistiller's CIFAR MobileNetV2 (`mobilenetv2_T_w`): expansion `expand_ratio`, width
  multiplier `width`; `conv1` and `conv2` are conv-BN-ReLU sequences, `classifier.0` the head."""

  def __init__(self, num_classes: int, width: float, expand_ratio: int = 6):
    super().__init__()
    t = expand_ratio
    stages = ((1, 16, 1, 1), (t, 24, 2, 1), (t, 32, 3, 2), (t, 64, 4, 2), (t, 96, 3, 1),
              (t, 160, 3, 2), (t, 320, 1, 1))
    in_channels = int(32 * width)
    self.conv1 = nn.Sequential(nn.Conv2d(3, in_channels, 3, 2, 1, bias=False),
                               nn.BatchNorm2d(in_channels), nn.ReLU())
    self.blocks = nn.ModuleList()
    for stage_ratio, channels, num_blocks, stride in stages:
      out_channels = int(channels * width)
      units = []
      for index in range(num_blocks):
        units.append(InvertedResidual(in_channels, out_channels, stride if index == 0 else 1,
                                      stage_ratio))
        in_channels = out_channels
      self.blocks.append(nn.Sequential(*units))
    last_channels = int(1280 * width) if width > 1.0 else 1280
    self.conv2 = nn.Sequential(nn.Conv2d(in_channels, last_channels, 1, bias=False),
                               nn.BatchNorm2d(last_channels), nn.ReLU())
    self.classifier = nn.Sequential(nn.Linear(last_channels, num_classes))
    _init_like_reference(self, classifier_std=0.01, zero_classifier_bias=True)

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    x = self.conv1(x)
    for stage in self.blocks:
      x = stage(x)
    return self.classifier(_global_mean(self.conv2(x)))


class ShuffleBottleneck(nn.Module):
  """ShuffleNetV1 unit: grouped 1×1-BN-ReLU, shuffle, depthwise 3×3-BN-ReLU, grouped 1×1-BN;
  a stride-2 unit concatenates a 3×3/2 average-pooled input, the others add the input."""

  def __init__(self, in_channels: int, features: int, stride: int, groups: int):
    super().__init__()
    mid = features // 4
    self.stride = stride
    self.first_groups = 1 if in_channels == SHUFFLE_STEM_CHANNELS else groups
    self.conv1 = nn.Conv2d(in_channels, mid, 1, groups=self.first_groups, bias=False)
    self.bn1 = nn.BatchNorm2d(mid)
    self.conv2 = nn.Conv2d(mid, mid, 3, stride, 1, groups=mid, bias=False)
    self.bn2 = nn.BatchNorm2d(mid)
    self.conv3 = nn.Conv2d(mid, features, 1, groups=groups, bias=False)
    self.bn3 = nn.BatchNorm2d(features)

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    y = F.relu(self.bn1(self.conv1(x)))
    y = _channel_shuffle(y, self.first_groups)
    y = F.relu(self.bn2(self.conv2(y)))
    y = self.bn3(self.conv3(y))
    if self.stride == 2:
      return F.relu(torch.cat([y, F.avg_pool2d(x, 3, 2, 1)], dim=1))
    return F.relu(y + x)


class ShuffleNetV1(nn.Module):
  """RepDistiller's `ShuffleV1`: 1×1 stem of 24, stages of 4, 8, 4 units (240, 480, 960
  channels, 3 groups), `linear`."""

  def __init__(self, num_classes: int, stage_channels: Sequence[int] = (240, 480, 960),
               stage_blocks: Sequence[int] = (4, 8, 4), groups: int = 3):
    super().__init__()
    self.conv1 = nn.Conv2d(3, SHUFFLE_STEM_CHANNELS, 1, bias=False)
    self.bn1 = nn.BatchNorm2d(SHUFFLE_STEM_CHANNELS)
    in_channels = SHUFFLE_STEM_CHANNELS
    for stage, (channels, num_blocks) in enumerate(zip(stage_channels, stage_blocks)):
      units = [ShuffleBottleneck(in_channels, channels - in_channels, 2, groups)]
      units += [ShuffleBottleneck(channels, channels, 1, groups) for _ in range(num_blocks - 1)]
      self.add_module(f"layer{stage + 1}", nn.Sequential(*units))
      in_channels = channels
    self.linear = nn.Linear(in_channels, num_classes)

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    x = F.relu(self.bn1(self.conv1(x)))
    x = self.layer3(self.layer2(self.layer1(x)))
    return self.linear(_global_mean(x))


class ShuffleV2Basic(nn.Module):
  """Keep the first half of the channels; 1×1-BN-ReLU, depthwise 3×3-BN, 1×1-BN-ReLU on the
  second; concatenate and shuffle."""

  def __init__(self, channels: int):
    super().__init__()
    half = channels // 2
    self.conv1 = nn.Conv2d(half, half, 1, bias=False)
    self.bn1 = nn.BatchNorm2d(half)
    self.conv2 = nn.Conv2d(half, half, 3, 1, 1, groups=half, bias=False)
    self.bn2 = nn.BatchNorm2d(half)
    self.conv3 = nn.Conv2d(half, half, 1, bias=False)
    self.bn3 = nn.BatchNorm2d(half)

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    kept, branch = x.chunk(2, dim=1)
    y = F.relu(self.bn1(self.conv1(branch)))
    y = self.bn2(self.conv2(y))
    y = F.relu(self.bn3(self.conv3(y)))
    return _channel_shuffle(torch.cat([kept, y], dim=1), 2)


class ShuffleV2Down(nn.Module):
  """Two stride-2 branches of `out_channels // 2` channels, concatenated and shuffled:
  left depthwise(conv1, bn1) → 1×1(conv2, bn2, ReLU); right 1×1(conv3, bn3, ReLU) →
  depthwise(conv4, bn4) → 1×1(conv5, bn5, ReLU)."""

  def __init__(self, in_channels: int, out_channels: int):
    super().__init__()
    mid = out_channels // 2
    self.conv1 = nn.Conv2d(in_channels, in_channels, 3, 2, 1, groups=in_channels, bias=False)
    self.bn1 = nn.BatchNorm2d(in_channels)
    self.conv2 = nn.Conv2d(in_channels, mid, 1, bias=False)
    self.bn2 = nn.BatchNorm2d(mid)
    self.conv3 = nn.Conv2d(in_channels, mid, 1, bias=False)
    self.bn3 = nn.BatchNorm2d(mid)
    self.conv4 = nn.Conv2d(mid, mid, 3, 2, 1, groups=mid, bias=False)
    self.bn4 = nn.BatchNorm2d(mid)
    self.conv5 = nn.Conv2d(mid, mid, 1, bias=False)
    self.bn5 = nn.BatchNorm2d(mid)

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    left = F.relu(self.bn2(self.conv2(self.bn1(self.conv1(x)))))
    right = F.relu(self.bn3(self.conv3(x)))
    right = F.relu(self.bn5(self.conv5(self.bn4(self.conv4(right)))))
    return _channel_shuffle(torch.cat([left, right], dim=1), 2)


class ShuffleNetV2(nn.Module):
  """RepDistiller's ShuffleNetV2 with `channels` = (stage 1, 2, 3, head) widths: 1×1 stem of 24,
  stages of a down unit + 3, 7, 3 basic units, 1×1 `conv2` + `bn2` + ReLU, `linear`."""

  def __init__(self, num_classes: int, channels: Sequence[int],
               stage_blocks: Sequence[int] = (3, 7, 3)):
    super().__init__()
    self.conv1 = nn.Conv2d(3, SHUFFLE_STEM_CHANNELS, 1, bias=False)
    self.bn1 = nn.BatchNorm2d(SHUFFLE_STEM_CHANNELS)
    in_channels = SHUFFLE_STEM_CHANNELS
    for stage, (features, num_blocks) in enumerate(zip(channels[:3], stage_blocks)):
      units = [ShuffleV2Down(in_channels, features)]
      units += [ShuffleV2Basic(features) for _ in range(num_blocks)]
      self.add_module(f"layer{stage + 1}", nn.Sequential(*units))
      in_channels = features
    self.conv2 = nn.Conv2d(in_channels, channels[3], 1, bias=False)
    self.bn2 = nn.BatchNorm2d(channels[3])
    self.linear = nn.Linear(channels[3], num_classes)

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    x = F.relu(self.bn1(self.conv1(x)))
    x = self.layer3(self.layer2(self.layer1(x)))
    x = F.relu(self.bn2(self.conv2(x)))
    return self.linear(_global_mean(x))


ModelFactory = Callable[[int], nn.Module]


def _factories() -> dict[str, ModelFactory]:
  """Every architecture, by its jaxkd zoo name, as a function of the number of classes."""
  factories: dict[str, ModelFactory] = {}
  for name, (depth, widths) in CIFAR_RESNETS.items():
    factories[name] = functools.partial(CifarResNet, depth, widths)
  for name, (depth, widen_factor) in WIDE_RESNETS.items():
    factories[name] = functools.partial(WideResNet, depth, widen_factor)
  for name, blocks in VGG_CONFIGS.items():
    factories[name] = functools.partial(VGG, blocks)
  factories["MobileNetV2"] = functools.partial(MobileNetV2, width=0.5)
  factories["MobileNetV2_1_0"] = functools.partial(MobileNetV2, width=1.0)
  factories["ShuffleV1"] = ShuffleNetV1
  factories["ShuffleV2"] = functools.partial(ShuffleNetV2, channels=(116, 232, 464, 1024))
  factories["ShuffleV2_1_5"] = functools.partial(ShuffleNetV2, channels=(176, 352, 704, 1024))
  factories["ResNet18"] = functools.partial(ResNet, BasicBlock, (2, 2, 2, 2))
  factories["ResNet34"] = functools.partial(ResNet, BasicBlock, (3, 4, 6, 3))
  factories["ResNet50"] = functools.partial(ResNet, Bottleneck, (3, 4, 6, 3))
  factories["ResNet18_cifar"] = functools.partial(
      ResNet, BasicBlock, (2, 2, 2, 2), cifar_stem=True)
  factories["ResNet50_cifar"] = functools.partial(
      ResNet, Bottleneck, (3, 4, 6, 3), cifar_stem=True)
  return factories


_FACTORIES = _factories()
MODEL_NAMES = tuple(sorted(_FACTORIES))


def create_model(name: str, num_classes: int) -> nn.Module:
  """The PyTorch definition of zoo model `name` with `num_classes` outputs."""
  if name not in _FACTORIES:
    raise ValueError(f"no PyTorch definition of model '{name}'; valid: {', '.join(MODEL_NAMES)}")
  return _FACTORIES[name](num_classes=num_classes)


def parameter_count(model: nn.Module) -> int:
  """Number of trainable parameters (batch-norm running statistics excluded)."""
  return sum(p.numel() for p in model.parameters())
