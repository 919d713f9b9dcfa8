"""Random PyTorch models in the published layouts, and the logits of both frameworks."""

import functools

import jax
import numpy as np
import torch

from benchmarks import torch_models
from jaxkd import models, torch_layout

NUM_CLASSES = 10
IMAGENET_MODELS = ("ResNet18", "ResNet34", "ResNet50")
# ImageNet ResNets at 224×224 are slow on 2 CPU cores; at 64×64 every layer still runs (2×2 last).
SMALL_IMAGENET_SIZE = 64
# Run op by op, these families reuse one compiled kernel per convolution shape across their many
# identical blocks (resnet110 in ~2 s, against ~9 s as one program); the other families compile
# faster as one program, with XLA's cheaper optimisation (float32 results equal to ~1e-7).
EAGER_FAMILIES = (torch_layout.CIFAR_RESNET, torch_layout.WIDE_RESNET)
FAST_COMPILE = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}


def image_size(name: str) -> int:
  return SMALL_IMAGENET_SIZE if name in IMAGENET_MODELS else 32


def random_model(name: str, seed: int = 0) -> torch.nn.Module:
  """The PyTorch model `name` in eval mode: the reference's random init, and BN with random
  γ ∈ [0.5, 1.5], β ~ N(0, 0.2²), running mean ~ N(0, 0.2²), running var ∈ [0.5, 2]."""
  torch.manual_seed(seed)
  model = torch_models.create_model(name, NUM_CLASSES).eval()
  generator = torch.Generator().manual_seed(seed)
  with torch.no_grad():
    for module in model.modules():
      if isinstance(module, torch.nn.BatchNorm2d):
        module.weight.uniform_(0.5, 1.5, generator=generator)
        module.bias.normal_(0.0, 0.2, generator=generator)
        module.running_mean.normal_(0.0, 0.2, generator=generator)
        module.running_var.uniform_(0.5, 2.0, generator=generator)
        module.num_batches_tracked.fill_(seed + 7)
  return model


def numpy_state_dict(model: torch.nn.Module) -> dict[str, np.ndarray]:
  return {key: value.numpy().copy() for key, value in model.state_dict().items()}


def random_images(name: str, batch_size: int = 2, seed: int = 0) -> np.ndarray:
  """NHWC float32 images of the size the test runs `name` on."""
  size = image_size(name)
  return np.random.default_rng(seed).normal(size=(batch_size, size, size, 3)).astype(np.float32)


def torch_logits(model: torch.nn.Module, images: np.ndarray) -> np.ndarray:
  with torch.no_grad():
    return model(torch.from_numpy(images.transpose(0, 3, 1, 2).copy())).numpy()


@functools.lru_cache(maxsize=None)
def _module(name: str, num_classes: int):
  return models.create_model(name, num_classes, conv_impl="xla")


@functools.lru_cache(maxsize=None)
def _compiled_apply(name: str, num_classes: int):
  return jax.jit(functools.partial(_module(name, num_classes).apply, train=False),
                 compiler_options=FAST_COMPILE)


def jaxkd_logits(name: str, variables, images: np.ndarray,
                 num_classes: int = NUM_CLASSES) -> np.ndarray:
  """Eval-mode logits of the jaxkd model `name` (XLA convolutions)."""
  if torch_layout.layout_of(name) in EAGER_FAMILIES:
    _, logits = _module(name, num_classes).apply(variables, images, train=False)
  else:
    _, logits = _compiled_apply(name, num_classes)(variables, images)
  return np.asarray(logits)


def relative_error(actual: np.ndarray, expected: np.ndarray) -> float:
  """max |actual − expected| / max |expected|, in float64."""
  actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
  return float(np.max(np.abs(actual - expected)) / np.max(np.abs(expected)))
