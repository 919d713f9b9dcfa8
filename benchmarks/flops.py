"""Model FLOPs of a train step and the device's measured matrix-product rate, for MFU.

Model FLOP utilisation (MFU) = (training FLOPs per image × images/s) / peak FLOP/s, where

    training FLOPs per image = 3·F(student) + k·F(teacher),   k = 1 (frozen) or 3 (trained)

and F(model) is the forward FLOP count of one image: 2 FLOPs per multiply-add of every
convolution and matrix product in the model's jaxpr (padding taps included, elementwise
work not counted, as MFU is usually reckoned). The count reads the traced program, so it
is the same on every backend. The factor 3 is the forward and the two backward products.
What a method adds beside the networks (projectors, the SKD simplifier, the loss) is not
counted: MFU here is a lower bound of the hardware's use.

The peak is measured, not read off a data sheet: the median rate of large square matrix
products in the given dtype on the default device.
"""

import functools
import math
import statistics
import time

import jax
from jax import lax
from jax.extend import core
import jax.numpy as jnp

from jaxkd import data, models


def _multiply_adds(eqn) -> int:
  """Multiply-adds of one convolution or matrix-product equation (0 for anything else)."""
  out_size = math.prod(eqn.outvars[0].aval.shape)
  if eqn.primitive is lax.conv_general_dilated_p:
    kernel_shape = eqn.invars[1].aval.shape
    _, kernel_spec, _ = eqn.params["dimension_numbers"]
    # Each output element sums kernel-spatial × (input features per group) products.
    per_output = math.prod(kernel_shape[d] for d in kernel_spec[1:])
    return out_size * per_output
  if eqn.primitive is lax.dot_general_p:
    (lhs_contracting, _), _ = eqn.params["dimension_numbers"]
    lhs_shape = eqn.invars[0].aval.shape
    return out_size * math.prod(lhs_shape[d] for d in lhs_contracting)
  return 0


def _jaxpr_multiply_adds(jaxpr: core.Jaxpr) -> int:
  """Multiply-adds of a jaxpr, its sub-jaxprs (jit, custom_vjp, ...) included."""
  total = 0
  for eqn in jaxpr.eqns:
    total += _multiply_adds(eqn)
    for sub in core.jaxprs_in_params(eqn.params):
      total += _jaxpr_multiply_adds(sub)
  return total


@functools.cache
def forward_flops(model_name: str, dataset: str) -> float:
  """2 × the multiply-adds of one image through `model_name` in eval mode."""
  info = data.dataset_info(dataset)
  module = models.create_model(model_name, info.num_classes, conv_impl="xla")
  image = jnp.zeros((1, *info.image_shape), jnp.float32)
  variables = jax.eval_shape(lambda: module.init(jax.random.key(0), image, train=False))
  closed = jax.make_jaxpr(lambda v, x: module.apply(v, x, train=False))(variables, image)
  return 2.0 * _jaxpr_multiply_adds(closed.jaxpr)


def training_flops_per_image(student: str, teacher: str | None, teacher_trained: bool,
                             dataset: str) -> float:
  """3·F(student) + (3 if the teacher trains else 1)·F(teacher); no teacher → 3·F(student)."""
  flops = 3 * forward_flops(student, dataset)
  if teacher:
    flops += (3 if teacher_trained else 1) * forward_flops(teacher, dataset)
  return flops


def measure_matmul_flops_per_s(dtype=jnp.bfloat16, size: int = 8192, repeats: int = 10,
                               rounds: int = 5) -> float:
  """Median FLOP/s of `size`² × `size`² products in `dtype` on the default device."""
  keys = jax.random.split(jax.random.key(0))
  a = jax.random.normal(keys[0], (size, size), dtype)
  b = jax.random.normal(keys[1], (size, size), dtype)

  @jax.jit
  def chain(a, b):
    # Each product feeds the next (scaled to stay finite), so none can be skipped.
    for _ in range(repeats):
      a = (a @ b) * jnp.asarray(1.0 / size, dtype)
    return a

  jax.block_until_ready(chain(a, b))
  rates = []
  for _ in range(rounds):
    start = time.perf_counter()
    jax.block_until_ready(chain(a, b))
    rates.append(2 * size**3 * repeats / (time.perf_counter() - start))
  return statistics.median(rates)
