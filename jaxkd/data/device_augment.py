"""CIFAR-style augmentation and normalisation as jit-able JAX functions on uint8 batches.

Semantics match torchvision's `RandomCrop(32, padding=4)` + `RandomHorizontalFlip()` +
`Normalize(mean, std)`: zero-pad each side by `pad`, take an H x W window whose top-left corner
(dy, dx) is uniform on {0..2*pad}^2, mirror it left-right with probability 1/2, then map
pixel x to (x / 255 - mean) / std.
"""

from typing import Sequence

import jax
import jax.numpy as jnp


def crop_flip_parameters(key: jax.Array, batch_size: int, pad: int) -> tuple[jax.Array, jax.Array]:
  """Random crop corners (B, 2) int32 as (dy, dx) in [0, 2*pad] and flips (B,) bool."""
  offset_key, flip_key = jax.random.split(key)
  offsets = jax.random.randint(offset_key, (batch_size, 2), 0, 2 * pad + 1, dtype=jnp.int32)
  flips = jax.random.bernoulli(flip_key, 0.5, (batch_size,))
  return offsets, flips


def crop_and_flip(images: jax.Array, offsets: jax.Array, flips: jax.Array, pad: int) -> jax.Array:
  """Zero-pads (B, H, W, C) images by `pad`, crops H x W at `offsets`, mirrors where `flips`."""
  height, width, channels = images.shape[1:]
  padded = jnp.pad(images, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
  crop_one = lambda image, corner: jax.lax.dynamic_slice(
      image, (corner[0], corner[1], 0), (height, width, channels))
  crops = jax.vmap(crop_one)(padded, offsets)
  return jnp.where(flips[:, None, None, None], crops[:, :, ::-1, :], crops)


def random_crop_and_flip(key: jax.Array, images: jax.Array, pad: int = 4) -> jax.Array:
  """`crop_and_flip` with parameters drawn by `crop_flip_parameters(key, B, pad)`."""
  offsets, flips = crop_flip_parameters(key, images.shape[0], pad)
  return crop_and_flip(images, offsets, flips, pad)


def normalize(images: jax.Array, mean: Sequence[float], std: Sequence[float]) -> jax.Array:
  """uint8 pixels x to float32 (x / 255 - mean) / std, per channel."""
  scaled = images.astype(jnp.float32) / 255.0
  return (scaled - jnp.asarray(mean, jnp.float32)) / jnp.asarray(std, jnp.float32)
