"""Tests for the XLA:CPU tap-sum convolution against XLA's and a NumPy reference."""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from jaxkd.models import layers
from jaxkd.ops import cpu_conv, replica_conv

from tests.ops.test_replica_conv import conv_group_counts

DIMENSION_NUMBERS = ("NHWC", "HWIO", "NHWC")

# name: (batch, height, width, in_channels, out_channels, kernel, stride, padding, groups)
CASES = {
    "3x3_s1": (2, 7, 7, 4, 6, 3, 1, 1, 1),
    "3x3_s2_odd": (2, 9, 7, 4, 6, 3, 2, 1, 1),
    "3x3_s2_even": (2, 8, 8, 4, 6, 3, 2, 1, 1),
    "1x1_s1": (2, 5, 5, 4, 6, 1, 1, 0, 1),
    "1x1_s2": (2, 7, 7, 4, 6, 1, 2, 0, 1),
    "7x7_s2_stem": (2, 11, 11, 3, 5, 7, 2, 3, 1),
    "grouped2_3x3_s1": (2, 7, 7, 4, 6, 3, 1, 1, 2),
    "grouped3_3x3_s2": (2, 7, 9, 6, 9, 3, 2, 1, 3),
    "grouped3_1x1": (2, 5, 5, 6, 9, 1, 1, 0, 3),
    "depthwise_s1": (2, 7, 7, 5, 5, 3, 1, 1, 5),
    "depthwise_s2": (2, 9, 9, 5, 5, 3, 2, 1, 5),
    "depthwise_multiplier2": (2, 7, 7, 4, 8, 3, 1, 1, 4),
}
# name: (case, padding other than the case's symmetric one)
PADDED_CASES = {
    "same": ("3x3_s2_even", "SAME"),
    "valid": ("3x3_s2_odd", "VALID"),
    "asymmetric": ("3x3_s2_even", ((0, 2), (2, 1))),
    "negative": ("3x3_s1", ((-1, 1), (1, 0))),
    "depthwise_same": ("depthwise_s2", "SAME"),
    "pointwise_padded": ("1x1_s2", ((1, 0), (0, 1))),
}
ALL_TAPS = (True, True, True)


def _operands(case, dtype=jnp.float32):
  """Standard-normal input and kernel (NumPy-generated: no per-shape compilation)."""
  n, h, w, ci, co, k, _, _, groups = case
  rng = np.random.default_rng(0)
  x = rng.standard_normal((n, h, w, ci), np.float32)
  kernel = rng.standard_normal((k, k, ci // groups, co), np.float32)
  return jnp.asarray(x, dtype), jnp.asarray(kernel, dtype)


def _conv_fn(conv, case, padding=None):
  *_, stride, pad, groups = case
  return lambda x, w: conv(
      x, w, (stride, stride), padding if padding is not None else [(pad, pad)] * 2,
      dimension_numbers=DIMENSION_NUMBERS, feature_group_count=groups)


def _all_cases():
  """name → (case, padding): every geometry the equality tests cover."""
  cases = {name: (case, None) for name, case in CASES.items()}
  cases.update({name: (CASES[base], padding) for name, (base, padding) in PADDED_CASES.items()})
  return cases


def _value_and_grads_of_all(conv, dtype=jnp.float32, names=None):
  """name → (output, d_input, d_kernel) of Σ y·c for a fixed random cotangent c.

  All cases run in one jitted function, so that the test compiles once.
  """
  cases = {name: spec for name, spec in _all_cases().items() if names is None or name in names}
  operands = {name: _operands(case, dtype) for name, (case, _) in cases.items()}

  cotangents = {}
  for name, (case, padding) in cases.items():
    shape = jax.eval_shape(_conv_fn(conv, case, padding), *operands[name]).shape
    cotangents[name] = jnp.asarray(np.random.default_rng(1).standard_normal(shape), dtype)

  def run(operands, cotangents):
    results = {}
    for name, (case, padding) in cases.items():
      y, vjp = jax.vjp(_conv_fn(conv, case, padding), *operands[name])
      results[name] = (y, *vjp(cotangents[name]))
    return results
  return jax.jit(run)(operands, cotangents)


@functools.lru_cache(maxsize=None)
def _xla_reference():
  return _value_and_grads_of_all(lax.conv_general_dilated)


@functools.lru_cache(maxsize=None)
def _ours(plan_name: str):
  """Results of `cpu_conv` for all cases; `plan_name` keys the plan the fixture set."""
  return _value_and_grads_of_all(cpu_conv.conv_general_dilated)


def _relative_error(actual, expected) -> float:
  actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
  return float(np.max(np.abs(actual - expected)) / np.max(np.abs(expected)))


@pytest.fixture(params=["planned", "all_taps"])
def plan(request, monkeypatch):
  """Runs a test with the measured plan, and with every piece forced to the tap sum."""
  if request.param == "all_taps":
    monkeypatch.setattr(cpu_conv, "plan_conv", lambda *args: ALL_TAPS)
  return request.param


def test_forward_and_gradients_match_xla(plan):
  ours = _ours(plan)
  reference = _xla_reference()
  for name, results in ours.items():
    for label, a, b in zip(("output", "d_input", "d_kernel"), results, reference[name]):
      assert a.shape == b.shape and a.dtype == b.dtype, (name, label)
      assert _relative_error(a, b) <= 1e-5, (name, label)


def _numpy_conv(x, w, stride, pad, groups):
  """Direct float64 NumPy convolution, NHWC/HWIO, symmetric padding."""
  x, w = np.asarray(x, np.float64), np.asarray(w, np.float64)
  k, _, in_per_group, co = w.shape
  out_per_group = co // groups
  xp = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
  ho = (xp.shape[1] - k) // stride + 1
  wo = (xp.shape[2] - k) // stride + 1
  y = np.zeros((x.shape[0], ho, wo, co))
  for i in range(k):
    for j in range(k):
      window = xp[:, i:i + stride * (ho - 1) + 1:stride, j:j + stride * (wo - 1) + 1:stride]
      for group in range(groups):
        cin = slice(group * in_per_group, (group + 1) * in_per_group)
        cout = slice(group * out_per_group, (group + 1) * out_per_group)
        y[..., cout] += window[..., cin] @ w[i, j, :, cout]
  return y


def test_forward_matches_numpy(plan):
  names = ("grouped3_3x3_s2", "depthwise_multiplier2", "1x1_s2", "7x7_s2_stem")
  ours = _ours(plan)
  for name in names:
    case = CASES[name]
    *_, stride, pad, groups = case
    expected = _numpy_conv(*_operands(case), stride, pad, groups)
    assert _relative_error(ours[name][0], expected) <= 1e-5, name


def test_bfloat16_output_dtype_and_accuracy(plan):
  names = ("3x3_s2_odd", "1x1_s2", "depthwise_s1", "grouped3_1x1")
  ours = _value_and_grads_of_all(cpu_conv.conv_general_dilated, jnp.bfloat16, names)
  reference = _xla_reference()
  for name in names:
    for a, b in zip(ours[name], reference[name]):
      assert a.dtype == jnp.bfloat16, name
      assert _relative_error(a, b) <= 2e-2, name


def test_vmap_over_extra_axis_matches_loop(plan):
  case = CASES["depthwise_s2"]
  x, w = _operands(case)
  conv = _conv_fn(cpu_conv.conv_general_dilated, case)
  xs = jnp.stack([x, 2.0 * x + 1.0])
  grad = jax.grad(lambda x, w: jnp.sum(conv(x, w) ** 2), argnums=1)
  batched = jax.jit(jax.vmap(grad, (0, None)))(xs, w)
  looped = jax.jit(lambda xs, w: jnp.stack([grad(xi, w) for xi in xs]))(xs, w)
  assert _relative_error(batched, looped) <= 1e-5


@pytest.mark.parametrize("name", ["3x3_s2_odd", "1x1_s2", "depthwise_s1"])
def test_vmap_over_replicas_with_their_own_kernels_is_each_replica_alone(plan, name):
  # Replicas (jaxkd.replicas) map over inputs and kernels. Batched kernels would make a
  # grouped convolution of a dense one (5× slower on XLA:CPU); each replica's convolution
  # is computed alone instead, so a replica equals its single run exactly.
  case = CASES[name]
  x, w = _operands(case)
  conv = _conv_fn(cpu_conv.conv_general_dilated, case)
  xs, ws = jnp.stack([x, 2.0 * x + 1.0, -x]), jnp.stack([w, 0.5 * w, w - 1.0])
  value_and_grads = jax.value_and_grad(lambda x, w: jnp.sum(jnp.tanh(conv(x, w))), (0, 1))
  batched = jax.jit(jax.vmap(value_and_grads))(xs, ws)
  for r in range(3):
    alone = jax.jit(value_and_grads)(xs[r], ws[r])
    for a, b in zip(jax.tree.leaves(batched), jax.tree.leaves(alone)):
      np.testing.assert_allclose(a[r], b, rtol=1e-6, atol=1e-6)
  # No convolution grouped over the replicas.
  assert max(conv_group_counts(jax.vmap(value_and_grads), xs, ws), default=1) <= case[-1]


def test_dilation_falls_back_to_xla():
  x, w = _operands(CASES["3x3_s1"])
  kwargs = dict(window_strides=(1, 1), padding=[(2, 2), (2, 2)], rhs_dilation=(2, 2),
                dimension_numbers=DIMENSION_NUMBERS)
  np.testing.assert_array_equal(
      cpu_conv.conv_general_dilated(x, w, **kwargs), lax.conv_general_dilated(x, w, **kwargs))


def test_plan_keeps_xla_for_dense_and_taps_for_depthwise_pointwise_grouped():
  assert cpu_conv.plan_conv((3, 3, 64, 64), (1, 1), 1) == (False, False, False)
  assert cpu_conv.plan_conv((3, 3, 64, 64), (2, 2), 1) == (False, False, False)
  assert cpu_conv.plan_conv((1, 1, 64, 128), (1, 1), 1) == ALL_TAPS
  assert cpu_conv.plan_conv((1, 1, 64, 128), (2, 2), 1) == (False, True, True)
  assert cpu_conv.plan_conv((3, 3, 20, 60), (1, 1), 3) == (False, False, True)
  assert cpu_conv.plan_conv((3, 3, 1, 96), (2, 2), 96) == ALL_TAPS


def test_sharded_batch_under_jit(plan):
  case = (8, 6, 6, 4, 6, 3, 2, 1, 1)
  x, w = _operands(case)
  mesh = Mesh(np.array(jax.devices()[:8]), ("data",))
  x_sharded = jax.device_put(x, NamedSharding(mesh, PartitionSpec("data")))
  w_replicated = jax.device_put(w, NamedSharding(mesh, PartitionSpec()))
  conv = _conv_fn(cpu_conv.conv_general_dilated, case)
  loss = jax.jit(jax.value_and_grad(lambda x, w: jnp.sum(jnp.tanh(conv(x, w))), argnums=(0, 1)))
  value, (dx, dw) = loss(x_sharded, w_replicated)
  ref_value, (ref_dx, ref_dw) = jax.value_and_grad(
      lambda x, w: jnp.sum(jnp.tanh(_conv_fn(lax.conv_general_dilated, case)(x, w))),
      argnums=(0, 1))(x, w)
  assert dx.sharding.is_equivalent_to(x_sharded.sharding, x.ndim)
  np.testing.assert_allclose(value, ref_value, rtol=1e-5)
  assert _relative_error(dx, ref_dx) <= 1e-5
  assert _relative_error(dw, ref_dw) <= 1e-5


@pytest.mark.parametrize("kwargs", [
    dict(features=6, kernel_size=(3, 3), strides=2, padding=1),
    dict(features=6, kernel_size=(1, 1), strides=2, padding=0, use_bias=False),
    dict(features=4, kernel_size=(3, 3), padding="SAME", feature_group_count=4),
])
def test_flax_conv_same_output_with_every_impl(kwargs):
  x = jax.random.normal(jax.random.key(2), (2, 9, 9, 4))
  impls = ("xla", "cpu", "per_replica")
  modules = {impl: layers.make_conv(conv_impl=impl)(**kwargs) for impl in impls}
  params = modules["xla"].init(jax.random.key(3), x)
  outputs = {}
  for impl, module in modules.items():
    loss = lambda p, x, module=module: jnp.sum(module.apply(p, x) ** 2)
    outputs[impl] = (module.apply(params, x), jax.grad(loss)(params, x))
  for impl in impls[1:]:
    assert _relative_error(outputs[impl][0], outputs["xla"][0]) <= 1e-5, impl
    for a, b in zip(jax.tree.leaves(outputs[impl][1]), jax.tree.leaves(outputs["xla"][1])):
      assert _relative_error(a, b) <= 1e-5, impl


def test_auto_resolves_to_cpu_conv_on_cpu():
  assert jax.default_backend() == "cpu"
  assert layers.resolve_conv_impl("auto") is cpu_conv.conv_general_dilated
  assert layers.resolve_conv_impl("cpu") is cpu_conv.conv_general_dilated
  assert layers.resolve_conv_impl("xla") is lax.conv_general_dilated
  assert layers.resolve_conv_impl("per_replica") is replica_conv.conv_general_dilated
  assert isinstance(layers.make_conv()(features=3, kernel_size=(3, 3)), nn.Conv)


def test_unknown_impl_raises():
  with pytest.raises(ValueError, match="unknown conv_impl 'winograd'"):
    layers.resolve_conv_impl("winograd")
  with pytest.raises(ValueError):
    layers.make_conv(conv_impl="cudnn")
