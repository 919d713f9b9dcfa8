"""The published PyTorch state_dict layout of each zoo model, mapped exactly to jaxkd variables.

A leaf of a jaxkd variables tree `{'params': ..., 'batch_stats': ...}` sits at a Flax module
path such as ('layer2_0', 'downsample_conv'). Its PyTorch key is that path with every module
name renamed by its family's table (`layer2_0` → `layer2.0`, `downsample_conv` →
`downsample.0`, names without a rule kept), joined by dots, then the tensor's PyTorch name:

    Flax leaf                              PyTorch tensor
    Conv   params kernel (H, W, I, O)      weight (O, I, H, W)
    Conv   params bias                     bias
    Dense  params kernel (in, out)         weight (out, in)
    Dense  params bias                     bias
    BN     params scale, bias              weight, bias
    BN     batch_stats mean, var           running_mean, running_var

plus each BN's `num_batches_tracked`, written (as 0) on export and accepted, not required, on
import (eval mode never reads it). Grouped and depthwise kernels follow the same transpose.
Nothing is hand-listed per key: the keys come from the variables tree itself, so a model's
layout is complete as soon as its family's renames are.

This module needs numpy and the jaxkd model definitions, never torch.
"""

import dataclasses
import re
from typing import Any, Callable, Mapping

from flax import traverse_util
import numpy as np

from jaxkd.models.vgg import VGG_CONFIGS

PyTree = Any
Rename = tuple[str, str | Callable[..., str]]

NUM_BATCHES_TRACKED = "num_batches_tracked"
_CONV_TO_TORCH_AXES = (3, 2, 0, 1)
_DENSE_TO_TORCH_AXES = (1, 0)
_LEAF_NAMES = {("params", "scale"): "weight", ("params", "bias"): "bias",
               ("params", "kernel"): "weight", ("batch_stats", "mean"): "running_mean",
               ("batch_stats", "var"): "running_var"}


@dataclasses.dataclass(frozen=True)
class TorchLayout:
  """A family's published layout.

  Attributes:
    source: the PyTorch definition whose state_dict keys this is.
    image_size: the input side the family is defined for (32 CIFAR, 224 ImageNet).
    renames: (regular expression, replacement) per Flax module name, first full match wins;
      the replacement is a `re` template (r'layer\\1.\\2') or a function of the groups.
  """
  source: str
  image_size: int
  renames: tuple[Rename, ...]

  def torch_module_name(self, flax_name: str) -> str:
    for pattern, replacement in self.renames:
      match = re.fullmatch(pattern, flax_name)
      if match:
        return replacement(*match.groups()) if callable(replacement) else match.expand(
            replacement)
    return flax_name


_STAGE_BLOCK = (r"layer(\d)_(\d+)", r"layer\1.\2")
_RESNET_RENAMES = (_STAGE_BLOCK, ("downsample_conv", "downsample.0"),
                   ("downsample_bn", "downsample.1"), ("classifier", "fc"))

CIFAR_RESNET = TorchLayout("RepDistiller / mdistiller models/resnet.py", 32, _RESNET_RENAMES)
TORCHVISION_RESNET = TorchLayout("torchvision torchvision/models/resnet.py", 224, _RESNET_RENAMES)
RESNET_V2 = TorchLayout(
    "RepDistiller / mdistiller models/resnetv2.py", 32,
    (_STAGE_BLOCK, ("downsample_conv", "shortcut.0"), ("downsample_bn", "shortcut.1"),
     ("classifier", "linear")))
WIDE_RESNET = TorchLayout(
    "RepDistiller / mdistiller models/wrn.py", 32,
    ((r"block(\d)_(\d+)", r"block\1.layer.\2"), ("shortcut_conv", "convShortcut"),
     ("classifier", "fc")))
VGG_BN = TorchLayout(
    "RepDistiller / mdistiller models/vgg.py (vgg*_bn)", 32,
    ((r"block(\d)_(\d+)_conv", lambda block, layer: f"block{block}.{3 * int(layer)}"),
     (r"block(\d)_(\d+)_bn", lambda block, layer: f"block{block}.{3 * int(layer) + 1}")))
MOBILENET_V2 = TorchLayout(
    "RepDistiller / mdistiller models/mobilenetv2.py", 32,
    (("conv1", "conv1.0"), ("bn1", "conv1.1"), ("conv2", "conv2.0"), ("bn2", "conv2.1"),
     (r"blocks(\d)_(\d+)", r"blocks.\1.\2"), ("expand_conv", "conv.0"), ("expand_bn", "conv.1"),
     ("depthwise_conv", "conv.3"), ("depthwise_bn", "conv.4"), ("project_conv", "conv.6"),
     ("project_bn", "conv.7"), ("classifier", "classifier.0")))
SHUFFLENET_V1 = TorchLayout("RepDistiller / mdistiller models/ShuffleNetv1.py", 32,
                            (_STAGE_BLOCK, ("classifier", "linear")))
SHUFFLENET_V2 = TorchLayout(
    "RepDistiller / mdistiller / SimKD models/ShuffleNetv2.py", 32,
    ((r"layer(\d)_down", r"layer\1.0"),
     (r"layer(\d)_(\d+)", lambda stage, index: f"layer{stage}.{int(index) + 1}"),
     ("classifier", "linear")))

_CIFAR_RESNET_NAMES = ("resnet8", "resnet14", "resnet20", "resnet32", "resnet38", "resnet44",
                       "resnet56", "resnet110", "resnet38x2", "resnet110x2", "resnet8x4",
                       "resnet32x4")
LAYOUTS: dict[str, TorchLayout] = {
    **{name: CIFAR_RESNET for name in _CIFAR_RESNET_NAMES},
    **{name: WIDE_RESNET for name in ("wrn_16_1", "wrn_16_2", "wrn_40_1", "wrn_40_2")},
    **{name: VGG_BN for name in VGG_CONFIGS},
    "MobileNetV2": MOBILENET_V2, "MobileNetV2_1_0": MOBILENET_V2,
    "ShuffleV1": SHUFFLENET_V1, "ShuffleV2": SHUFFLENET_V2, "ShuffleV2_1_5": SHUFFLENET_V2,
    "ResNet18": TORCHVISION_RESNET, "ResNet34": TORCHVISION_RESNET,
    "ResNet50": TORCHVISION_RESNET,
    "ResNet18_cifar": RESNET_V2, "ResNet50_cifar": RESNET_V2,
}
# A module without a published definition (SimKD's projector): its PyTorch counterpart uses
# jaxkd's own module names, so its keys are the Flax paths joined by dots.
JAXKD_NAMES = TorchLayout("jaxkd's own module names", 32, ())


def supported_models() -> list[str]:
  """The zoo models that have a published PyTorch layout, sorted."""
  return sorted(LAYOUTS)


def layout_of(model_name: str) -> TorchLayout:
  """The published layout of `model_name`; a ValueError lists the supported names."""
  if model_name not in LAYOUTS:
    raise ValueError(f"model '{model_name}' has no published PyTorch layout; models with one: "
                     f"{', '.join(supported_models())}")
  return LAYOUTS[model_name]


@dataclasses.dataclass(frozen=True)
class _Tensor:
  """Where one PyTorch tensor lives in the Flax tree, and the axes that turn one into the other.

  `torch_axes` is the transpose taking the Flax array to the PyTorch one (None: same layout).
  """
  flax_path: tuple[str, ...]
  torch_axes: tuple[int, ...] | None

  def to_torch(self, array: np.ndarray) -> np.ndarray:
    return array if self.torch_axes is None else np.transpose(array, self.torch_axes)

  def from_torch(self, array: np.ndarray) -> np.ndarray:
    return array if self.torch_axes is None else np.transpose(array, np.argsort(self.torch_axes))

  def torch_shape(self, flax_shape: tuple[int, ...]) -> tuple[int, ...]:
    if self.torch_axes is None:
      return tuple(flax_shape)
    return tuple(flax_shape[axis] for axis in self.torch_axes)


def _torch_axes(leaf_name: str, ndim: int) -> tuple[int, ...] | None:
  if leaf_name != "kernel":
    return None
  return _CONV_TO_TORCH_AXES if ndim == 4 else _DENSE_TO_TORCH_AXES


def _tensors(model_name: str, layout: TorchLayout,
             flat_variables: Mapping[tuple[str, ...], Any]) -> tuple[dict[str, _Tensor], list[str]]:
  """Every PyTorch key of the model → its `_Tensor`, and the BN `num_batches_tracked` keys."""
  tensors, counters = {}, []
  for path, leaf in flat_variables.items():
    collection, *modules, leaf_name = path
    if (collection, leaf_name) not in _LEAF_NAMES:
      raise ValueError(f"variables of '{model_name}' hold {'/'.join(path)}, which no PyTorch "
                       "tensor corresponds to: pass the variables of a jaxkd zoo model")
    prefix = ".".join(layout.torch_module_name(name) for name in modules)
    tensors[f"{prefix}.{_LEAF_NAMES[collection, leaf_name]}"] = _Tensor(
        path, _torch_axes(leaf_name, len(leaf.shape)))
    if collection == "batch_stats" and leaf_name == "mean":
      counters.append(f"{prefix}.{NUM_BATCHES_TRACKED}")
  return tensors, counters


def torch_state_dict_from_variables(model_name: str, variables: PyTree,
                                    layout: TorchLayout | None = None) -> dict[str, np.ndarray]:
  """The PyTorch state_dict (name → numpy array) of jaxkd `variables` of `model_name`.

  It loads with `load_state_dict(strict=True)` into the published definition (see
  `layout_of(model_name).source`), or the one `layout` describes when given (`JAXKD_NAMES`
  for a module without a published definition); BN `num_batches_tracked` is written as
  int64 0.
  """
  flat = traverse_util.flatten_dict(variables)
  tensors, counters = _tensors(model_name, layout or layout_of(model_name), flat)
  state_dict = {key: np.asarray(tensor.to_torch(np.asarray(flat[tensor.flax_path])), order="C")
                for key, tensor in tensors.items()}
  state_dict.update({key: np.zeros((), np.int64) for key in counters})
  return state_dict


def _layers(keys: list[str]) -> str:
  """The layers (modules) that `keys` belong to, the first three named: 'layer1.1.bn1, ...'."""
  layers = sorted({key.rsplit(".", 1)[0] for key in keys})
  return ", ".join(layers[:3]) + (", ..." if len(layers) > 3 else "")


def _how_it_differs(missing: list[str], unexpected: list[str],
                    wrong_shapes: list[tuple[str, tuple, tuple]]) -> str:
  """What the checkpoint's architecture has otherwise than the model, in words: its classes
  (the first axis of a matrix), channels (of a convolution) and layers (missing or extra
  keys), e.g. 'the checkpoint has 100 classes, the model 10'."""
  differences = []
  for key, found, expected in wrong_shapes:
    if len(expected) == 2 and found[1:] == expected[1:]:
      differences.append(f"the checkpoint has {found[0]} classes, the model {expected[0]} "
                         f"({key})")
      break
  convolutions = [(key, found, expected) for key, found, expected in wrong_shapes
                  if len(expected) == 4 and len(found) == 4]
  if convolutions:
    key, found, expected = convolutions[0]
    differences.append(f"its convolutions have other channel counts ({key} maps {found[1]} to "
                       f"{found[0]} channels, the model's {expected[1]} to {expected[0]})")
  if unexpected:
    differences.append(f"it has layers the model lacks ({_layers(unexpected)})")
  if missing:
    differences.append(f"it lacks layers of the model ({_layers(missing)})")
  return "; ".join(differences)


def _problems(state_dict: Mapping[str, Any], tensors: Mapping[str, _Tensor],
              counters: list[str], flat_like: Mapping[tuple[str, ...], Any]) -> list[str]:
  """How the checkpoint differs (`_how_it_differs`), then its missing keys, unexpected keys
  and wrong shapes, one phrase each."""
  accepted = set(tensors) | set(counters)
  missing = sorted(key for key in tensors if key not in state_dict)
  unexpected = sorted(key for key in state_dict if key not in accepted)
  wrong_shapes = []
  for key, tensor in tensors.items():
    if key in state_dict:
      expected = tensor.torch_shape(flat_like[tensor.flax_path].shape)
      found = tuple(np.shape(state_dict[key]))
      if found != expected:
        wrong_shapes.append((key, found, expected))
  summary = _how_it_differs(missing, unexpected, wrong_shapes)
  phrases = [summary] if summary else []
  for label, items in (("missing", missing), ("unexpected", unexpected),
                       ("wrong shape", [f"{key} is {found}, expected {expected}"
                                        for key, found, expected in wrong_shapes])):
    if items:
      phrases.append(f"{len(items)} {label}: {', '.join(items)}")
  return phrases


def variables_from_torch_state_dict(model_name: str, state_dict: Mapping[str, Any],
                                    variables_like: PyTree,
                                    layout: TorchLayout | None = None) -> PyTree:
  """jaxkd variables of `model_name` (numpy, structured and typed as `variables_like`) from a
  PyTorch state_dict in the published layout (or in `layout`, when given).

  `variables_like` is the model's variables tree or its `jax.eval_shape`; it fixes the number
  of classes. `num_batches_tracked` entries are accepted and dropped.

  Raises:
    ValueError: naming, in one message, every missing key, unexpected key and wrong shape
      (nothing is converted then), or when `model_name` has no published layout.
  """
  flat_like = traverse_util.flatten_dict(variables_like)
  layout = layout or layout_of(model_name)
  tensors, counters = _tensors(model_name, layout, flat_like)
  problems = _problems(state_dict, tensors, counters, flat_like)
  if problems:
    raise ValueError(
        f"the PyTorch state_dict does not fit model '{model_name}' (layout of "
        f"{layout.source}, with this number of classes): "
        + "; ".join(problems) + ". Name the architecture and class count the checkpoint was "
        "trained with")
  flat = {tensor.flax_path: np.asarray(tensor.from_torch(np.asarray(state_dict[key])),
                                       dtype=flat_like[tensor.flax_path].dtype, order="C")
          for key, tensor in tensors.items()}
  return traverse_util.unflatten_dict(flat)
