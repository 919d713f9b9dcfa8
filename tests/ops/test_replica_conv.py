"""`replica_conv`: XLA's convolution, once per replica under vmap over kernels."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxkd.ops import replica_conv

DIMENSION_NUMBERS = ("NHWC", "HWIO", "NHWC")


def conv_group_counts(fn, *args) -> set[int]:
  """The feature_group_count of every convolution in `fn`'s jaxpr (inner jaxprs too)."""
  def equations(jaxpr):
    for eqn in jaxpr.eqns:
      yield eqn
      for param in eqn.params.values():
        for inner in (param if isinstance(param, (tuple, list)) else (param,)):
          inner = getattr(inner, "jaxpr", inner)
          if hasattr(inner, "eqns"):
            yield from equations(inner)
  return {eqn.params["feature_group_count"]
          for eqn in equations(jax.make_jaxpr(fn)(*args).jaxpr)
          if eqn.primitive.name == "conv_general_dilated"}


def _conv(impl, stride, groups):
  return lambda x, w: impl(x, w, (stride, stride), "SAME", dimension_numbers=DIMENSION_NUMBERS,
                           feature_group_count=groups)


@pytest.mark.parametrize("stride,groups,in_channels", [(1, 1, 4), (2, 1, 4), (1, 2, 4)])
def test_value_and_gradients_are_xla_s_and_replicas_run_one_by_one(stride, groups, in_channels):
  rng = np.random.default_rng(0)
  xs = jnp.asarray(rng.standard_normal((3, 2, 7, 7, in_channels)), jnp.float32)
  ws = jnp.asarray(rng.standard_normal((3, 3, 3, in_channels // groups, 6)), jnp.float32)

  def value_and_grads(conv):
    return jax.value_and_grad(lambda x, w: jnp.sum(jnp.tanh(conv(x, w))), (0, 1))

  ours = value_and_grads(_conv(replica_conv.conv_general_dilated, stride, groups))
  xla = value_and_grads(_conv(jax.lax.conv_general_dilated, stride, groups))
  for a, b in zip(jax.tree.leaves(jax.jit(ours)(xs[0], ws[0])),
                  jax.tree.leaves(jax.jit(xla)(xs[0], ws[0]))):
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)
  batched = jax.jit(jax.vmap(ours))(xs, ws)
  for r in range(3):
    for a, b in zip(jax.tree.leaves(batched), jax.tree.leaves(jax.jit(ours)(xs[r], ws[r]))):
      np.testing.assert_array_equal(a[r], b)  # Each replica is its single run, exactly.
  # (A grouped convolution's weight gradient is an ungrouped one with batch groups.)
  assert max(conv_group_counts(jax.vmap(ours), xs, ws)) == groups
  assert max(conv_group_counts(jax.vmap(xla), xs, ws)) == 3 * groups  # What it avoids.
