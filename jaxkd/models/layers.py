"""Layer factories shared by every model of the zoo.

Every convolution of every model is built by `make_conv`, so that one switch
(`conv_impl`) selects how convolutions are computed for the whole network.
Batch norm follows PyTorch's defaults (momentum 0.1 → Flax momentum 0.9, eps 1e-5),
so that imported PyTorch weights and recipes behave the same.
"""

import functools
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxkd import precision
from jaxkd.ranges import did_you_mean
from jaxkd.ops import cpu_conv, replica_conv

ModuleDef = Any

CONV_IMPLS = ("auto", "xla", "cpu", "per_replica")


def conv_impl_name(conv_impl: str) -> str:
  """"xla", "cpu" or "per_replica": what `conv_impl` means on JAX's default backend.

  "xla" is XLA's convolution, "cpu" the tap-sum convolution of `jaxkd.ops.cpu_conv`
  (faster on XLA:CPU, replicas one by one), "per_replica" XLA's convolution computed once
  per replica of a replicated run instead of grouped over them (`jaxkd.ops.replica_conv`:
  for timing the two on accelerators), and "auto" picks "cpu" when JAX's default backend
  is the CPU and "xla" otherwise.
  """
  if conv_impl not in CONV_IMPLS:
    raise ValueError(f"unknown conv_impl '{conv_impl}'; valid: {', '.join(CONV_IMPLS)}"
                     f"{did_you_mean(conv_impl, CONV_IMPLS)}")
  if conv_impl == "auto":
    return "cpu" if jax.default_backend() == "cpu" else "xla"
  return conv_impl


def resolve_conv_impl(conv_impl: str) -> Callable[..., jax.Array]:
  """Returns the `lax.conv_general_dilated`-compatible function named by `conv_impl`."""
  name = conv_impl_name(conv_impl)
  if name == "cpu":
    return cpu_conv.conv_general_dilated
  if name == "per_replica":
    return replica_conv.conv_general_dilated
  return jax.lax.conv_general_dilated


def make_conv(dtype: Any = jnp.float32, conv_impl: str = "auto", **defaults) -> ModuleDef:
  """`nn.Conv` with full-precision parameters (`jaxkd.precision`), compute in `dtype`, and the
  selected convolution."""
  return functools.partial(
      nn.Conv, dtype=dtype, param_dtype=precision.full_precision(),
      conv_general_dilated=resolve_conv_impl(conv_impl), **defaults)


def make_batch_norm(train: bool, dtype: Any = jnp.float32) -> ModuleDef:
  """BatchNorm with PyTorch's momentum and epsilon; batch statistics when training."""
  return functools.partial(
      nn.BatchNorm, use_running_average=not train, momentum=0.9, epsilon=1e-5,
      dtype=dtype, param_dtype=precision.full_precision())
