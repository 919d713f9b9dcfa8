"""Pieces shared by SimKD and ATSC (docs/methods.md §5, §6): projector, alignment, shared head.

- `adaptive_avg_pool`: PyTorch's `adaptive_avg_pool2d` on NHWC maps.
- `Projector`: C_s → C_t/f → C_t/f → C_t, as 1×1 conv-BN-ReLU, 3×3 conv-BN-ReLU,
  1×1 conv-BN-ReLU (no conv biases; the last ReLU keeps h ≥ 0 like post-ReLU teacher maps).
- `TeacherProjectors`: the methods' `extra` module, one `Projector` per teacher. Each
  first pools the student map to the smaller of the two spatial sizes (SimKD: when
  H_s > H_t the student map is pooled, otherwise the teacher map is, by `pool_to_match`).
- `shared_head_logits`: ŷ = W_t · GAP(h) + b_t with a teacher's classifier parameters.
- `combine_logits`: several teachers' shared-head predictions as one.
"""

from typing import Any, Mapping, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxkd import precision
from jaxkd.models.common import torch_default_kernel_init
from jaxkd.models.layers import make_batch_norm, make_conv

COMBINATIONS = ("mean_logits", "mean_probs")


def _pooling_matrix(in_size: int, out_size: int) -> np.ndarray:
  """(out, in) averaging weights of PyTorch's adaptive pooling along one axis.

  Output i averages inputs [⌊i·n/m⌋, ⌈(i+1)·n/m⌉) for n inputs and m outputs.
  """
  matrix = np.zeros((out_size, in_size), np.float64)
  for i in range(out_size):
    start = (i * in_size) // out_size
    end = -((-(i + 1) * in_size) // out_size)
    matrix[i, start:end] = 1.0 / (end - start)
  return matrix


def adaptive_avg_pool(feature_map: jax.Array, size: tuple[int, int]) -> jax.Array:
  """Adaptive average pooling of a (B, H, W, C) map to (B, size[0], size[1], C)."""
  height, width = feature_map.shape[1:3]
  if (height, width) == tuple(size):
    return feature_map
  rows = jnp.asarray(_pooling_matrix(height, size[0]), feature_map.dtype)
  cols = jnp.asarray(_pooling_matrix(width, size[1]), feature_map.dtype)
  return jnp.einsum("oh,bhwc,pw->bopc", rows, feature_map, cols)


def pool_to_match(feature_map: jax.Array, reference: jax.Array) -> jax.Array:
  """`feature_map` pooled to the spatial size of `reference` (never larger than its own)."""
  size = tuple(min(a, b) for a, b in zip(feature_map.shape[1:3], reference.shape[1:3]))
  return adaptive_avg_pool(feature_map, size)


class Projector(nn.Module):
  """SimKD's projector: 1×1 conv-BN-ReLU, 3×3 conv-BN-ReLU, 1×1 conv-BN-ReLU.

  Channels C_in → C_out/factor → C_out/factor → C_out, PyTorch default conv init.
  """
  out_channels: int
  factor: int = 2
  dtype: Any = jnp.float32
  conv_impl: str = "auto"

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    conv = make_conv(self.dtype, self.conv_impl, use_bias=False,
                     kernel_init=torch_default_kernel_init)
    norm = make_batch_norm(train, self.dtype)
    hidden = self.out_channels // self.factor
    for index, (features, kernel) in enumerate(
        ((hidden, 1), (hidden, 3), (self.out_channels, 1))):
      x = conv(features, (kernel, kernel), padding=kernel // 2, name=f"conv{index}")(x)
      x = nn.relu(norm(name=f"bn{index}")(x))
    return x


class TeacherProjectors(nn.Module):
  """One `Projector` per teacher (`projector0`, `projector1`, ...) on the student's map.

  `teacher_maps` holds each teacher's feature-map shape (H, W, C). Teacher i's projector
  sees the student map pooled to (min(H_s, H_i), min(W_s, W_i)) and outputs C_i channels.
  """
  teacher_maps: tuple[tuple[int, int, int], ...]
  factor: int = 2
  dtype: Any = jnp.float32
  conv_impl: str = "auto"

  @nn.compact
  def __call__(self, student_map: jax.Array, train: bool) -> tuple[jax.Array, ...]:
    projected = []
    for index, (height, width, channels) in enumerate(self.teacher_maps):
      size = (min(student_map.shape[1], height), min(student_map.shape[2], width))
      projector = Projector(channels, self.factor, self.dtype, self.conv_impl,
                            name=f"projector{index}")
      projected.append(projector(adaptive_avg_pool(student_map, size), train))
    return tuple(projected)


def shared_head_logits(classifier: Mapping[str, jax.Array], feature_map: jax.Array) -> jax.Array:
  """ŷ = GAP(h) · W + b, in full precision (`jaxkd.precision`), with a teacher's `params['classifier']` {kernel, bias}."""
  pooled = jnp.mean(feature_map.astype(precision.full_precision()), axis=(1, 2))
  return pooled @ classifier["kernel"] + classifier["bias"]


def combine_logits(logits: Sequence[jax.Array], combination: str) -> jax.Array:
  """One prediction from several teachers' shared-head logits z_1..z_n.

  'mean_logits': (1/n) Σ_i z_i.
  'mean_probs':  log((1/n) Σ_i σ(z_i)), log-probabilities of the mixture (argmax and
  cross entropy of these are those of the averaged probabilities).
  """
  if combination not in COMBINATIONS:
    raise ValueError(f"unknown combination '{combination}'; valid: {', '.join(COMBINATIONS)}")
  stacked = jnp.stack(logits)
  if combination == "mean_logits":
    return jnp.mean(stacked, axis=0)
  return jax.nn.logsumexp(jax.nn.log_softmax(stacked, axis=-1), axis=0) - np.log(len(logits))
