"""A drop-in `lax.conv_general_dilated` tuned for XLA:CPU.

XLA:CPU computes dense k×k convolutions well (85-180 GFLOP/s on 2 cores), but
is slow on other shapes a CIFAR model zoo leans on: depthwise convolutions (all
three pieces), and the weight gradient of pointwise (1×1) and grouped ones. This
module computes each piece of a convolution — forward, input gradient, weight
gradient — by one of two formulations, chosen per layer geometry (`plan_conv`):

* XLA's own convolution (kept where it is fastest: all of dense k×k
  convolutions, strided pointwise forward);
* a sum over kernel taps. With x̃ the padded input, s the stride and W[i, j]
  the kernel tap (i, j),

    y[n, h, w]       = Σ_ij x̃[n, s·h + i, s·w + j] · W[i, j]
    ∂L/∂W[i, j]      = Σ_nhw x̃[n, s·h + i, s·w + j]ᵀ · g[n, h, w]
    ∂L/∂x̃[n, s·h + i, s·w + j] += g[n, h, w] · W[i, j]ᵀ

  where each product is a matrix product over channels (batched over groups),
  or an elementwise product for depthwise kernels; accumulation is in float32
  (float64 under jax_enable_x64, `jaxkd.precision`).

Under `jax.vmap` over kernels too (the replicas of `jaxkd.replicas`), each XLA piece
is computed once per replica (`replica_conv.per_replica`) instead of as one convolution
grouped over the replicas, which XLA:CPU runs 4-5× slower. The pieces form a
`jax.custom_vjp`: reverse-mode differentiation only (conv_impl='xla' for forward mode).

Argument combinations outside NHWC/HWIO layouts, dilations or batch groups go
to `lax.conv_general_dilated` unchanged.
"""

import dataclasses
import functools
from typing import Any, Sequence

import jax
import jax.numpy as jnp
from jax import lax

from jaxkd.ops import replica_conv
from jaxkd.precision import full_precision

_NHWC_HWIO = lax.ConvDimensionNumbers(
    lhs_spec=(0, 3, 1, 2), rhs_spec=(3, 2, 0, 1), out_spec=(0, 3, 1, 2))


@dataclasses.dataclass(frozen=True)
class ConvGeometry:
  """Static description of one NHWC/HWIO convolution and how to compute it.

  Attributes:
    strides: (sh, sw).
    padding: ((low_h, high_h), (low_w, high_w)); may be negative.
    groups: feature_group_count.
    precision: passed to every matrix product.
    out_dtype: dtype of the forward result.
    taps_forward: forward by tap sum (else XLA).
    taps_input_grad: input gradient by tap sum (else XLA).
    taps_weight_grad: weight gradient by tap sum (else XLA).
  """
  strides: tuple[int, int]
  padding: tuple[tuple[int, int], tuple[int, int]]
  groups: int
  precision: Any
  out_dtype: Any
  taps_forward: bool
  taps_input_grad: bool
  taps_weight_grad: bool


def plan_conv(
    kernel_shape: Sequence[int], strides: Sequence[int], groups: int
) -> tuple[bool, bool, bool]:
  """Chooses the tap sum (True) or XLA (False) for (forward, input grad, weight grad).

  Measured on a 2-core x86 CPU at CIFAR batch 64 (benchmarks/conv_cpu.py): depthwise
  convolutions are faster as tap sums in all three pieces (2-150×); pointwise ones in
  the weight gradient (3.5-14×), the input gradient and the unstrided forward (XLA's
  strided 1×1 forward is faster); grouped k×k ones in the weight gradient (12×). XLA
  is kept for everything of dense k×k convolutions, where it runs at 85-180 GFLOP/s.
  """
  kh, kw, in_per_group, _ = kernel_shape
  if in_per_group == 1 and groups > 1:
    return True, True, True
  if kh == 1 and kw == 1:
    return all(s == 1 for s in strides), True, True
  return False, False, groups > 1


def conv_general_dilated(
    lhs: jax.Array,
    rhs: jax.Array,
    window_strides: Sequence[int],
    padding: str | Sequence[tuple[int, int]],
    lhs_dilation: Sequence[int] | None = None,
    rhs_dilation: Sequence[int] | None = None,
    dimension_numbers: Any = None,
    feature_group_count: int = 1,
    batch_group_count: int = 1,
    precision: Any = None,
    preferred_element_type: Any = None,
) -> jax.Array:
  """Same contract as `jax.lax.conv_general_dilated`, faster on XLA:CPU.

  Takes the tap-sum route for 2-D NHWC/HWIO convolutions without dilation or
  batch groups (the layouts `flax.linen.Conv` uses); everything else is passed
  to `lax.conv_general_dilated`.
  """
  xla_conv = functools.partial(
      lax.conv_general_dilated, lhs, rhs, window_strides, padding,
      lhs_dilation=lhs_dilation, rhs_dilation=rhs_dilation,
      dimension_numbers=dimension_numbers,
      feature_group_count=feature_group_count,
      batch_group_count=batch_group_count, precision=precision,
      preferred_element_type=preferred_element_type)
  if lhs.ndim != 4 or rhs.ndim != 4 or batch_group_count != 1:
    return xla_conv()
  if lax.conv_dimension_numbers(lhs.shape, rhs.shape, dimension_numbers) != _NHWC_HWIO:
    return xla_conv()
  if any(d != 1 for d in (lhs_dilation or ())) or any(d != 1 for d in (rhs_dilation or ())):
    return xla_conv()
  kernel_hw = rhs.shape[:2]
  strides = tuple(int(s) for s in window_strides)
  if isinstance(padding, str):
    padding = lax.padtype_to_pads(lhs.shape[1:3], kernel_hw, strides, padding)
  pads = tuple((int(lo), int(hi)) for lo, hi in padding)
  out_hw = _output_hw(lhs.shape[1:3], kernel_hw, strides, pads)
  if min(out_hw) <= 0:
    return xla_conv()
  choice = plan_conv(rhs.shape, strides, feature_group_count)
  geometry = ConvGeometry(
      strides=strides, padding=pads, groups=feature_group_count,
      precision=precision,
      out_dtype=jnp.dtype(preferred_element_type or lhs.dtype),
      taps_forward=choice[0], taps_input_grad=choice[1], taps_weight_grad=choice[2])
  return _conv(lhs, rhs, geometry)


def _output_hw(in_hw, kernel_hw, strides, pads) -> tuple[int, int]:
  return tuple(
      (size + lo + hi - k) // s + 1
      for size, k, s, (lo, hi) in zip(in_hw, kernel_hw, strides, pads))


def _xla_conv(x: jax.Array, w: jax.Array, geometry: ConvGeometry) -> jax.Array:
  return lax.conv_general_dilated(
      x, w, geometry.strides, geometry.padding, dimension_numbers=_NHWC_HWIO,
      feature_group_count=geometry.groups, precision=geometry.precision,
      preferred_element_type=(
          None if geometry.out_dtype == x.dtype else geometry.out_dtype))


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _conv(x: jax.Array, w: jax.Array, geometry: ConvGeometry) -> jax.Array:
  if geometry.taps_forward:
    return _forward_taps(x, w, geometry)
  return replica_conv.per_replica(functools.partial(_xla_conv, geometry=geometry))(x, w)


def _conv_fwd(x, w, geometry):
  return _conv(x, w, geometry), (x, w)


def _conv_bwd(geometry, residuals, g):
  x, w = residuals
  if geometry.taps_input_grad:
    dx = _input_grad_taps(g, w, x.shape, geometry).astype(x.dtype)
  else:
    dx = replica_conv.per_replica(functools.partial(
        replica_conv.input_grad, functools.partial(_xla_conv, geometry=geometry)))(g, x, w)
  if geometry.taps_weight_grad:
    dw = _weight_grad_taps(x, g, w.shape, geometry).astype(w.dtype)
  else:
    dw = replica_conv.per_replica(functools.partial(
        replica_conv.weight_grad, functools.partial(_xla_conv, geometry=geometry)))(g, x, w)
  return dx, dw


_conv.defvjp(_conv_fwd, _conv_bwd)


def _pad_spatial(x: jax.Array, pads) -> jax.Array:
  """Zero-pads (or, for negative entries, crops) the two spatial axes."""
  zero = jnp.zeros((), x.dtype)
  return lax.pad(x, zero, [(0, 0, 0), (*pads[0], 0), (*pads[1], 0), (0, 0, 0)])


def _tap_windows(x_padded: jax.Array, kernel_hw, strides, out_hw):
  """Yields ((i, j), window): the strided input window multiplying kernel tap (i, j)."""
  n, _, _, c = x_padded.shape
  (sh, sw), (ho, wo) = strides, out_hw
  for i in range(kernel_hw[0]):
    for j in range(kernel_hw[1]):
      window = lax.slice(
          x_padded, (0, i, j, 0), (n, i + sh * (ho - 1) + 1, j + sw * (wo - 1) + 1, c),
          (1, sh, sw, 1))
      yield (i, j), window


def _dot(lhs, rhs, contract, batch, precision):
  return lax.dot_general(
      lhs, rhs, (contract, batch), precision=precision, preferred_element_type=full_precision())


def _tap_forward(window: jax.Array, w_tap: jax.Array, geometry: ConvGeometry) -> jax.Array:
  """window (N,H,W,Ci) · w_tap (Ci/G, Co) → (N,H,W,Co), per group, full precision."""
  g = geometry.groups
  in_per_group, co = w_tap.shape
  if g == 1:
    return _dot(window, w_tap, ((3,), (0,)), ((), ()), geometry.precision)
  lead = window.shape[:3]
  window = window.reshape(*lead, g, in_per_group)
  w_tap = w_tap.reshape(in_per_group, g, co // g)
  if in_per_group == 1:
    acc = full_precision()
    y = window.astype(acc) * w_tap[0].astype(acc)
  else:
    y = jnp.moveaxis(_dot(window, w_tap, ((4,), (0,)), ((3,), (1,)), geometry.precision), 0, 3)
  return y.reshape(*lead, co)


def _tap_input_grad(g_out: jax.Array, w_tap: jax.Array, geometry: ConvGeometry) -> jax.Array:
  """g_out (N,H,W,Co) · w_tapᵀ (Co, Ci/G) → (N,H,W,Ci), per group, full precision."""
  g = geometry.groups
  in_per_group, co = w_tap.shape
  if g == 1:
    return _dot(g_out, w_tap, ((3,), (1,)), ((), ()), geometry.precision)
  lead = g_out.shape[:3]
  g_out = g_out.reshape(*lead, g, co // g)
  w_tap = w_tap.reshape(in_per_group, g, co // g)
  if in_per_group == 1:
    acc = full_precision()
    dx = jnp.sum(g_out.astype(acc) * w_tap[0].astype(acc), axis=-1, keepdims=True)
  else:
    dx = jnp.moveaxis(_dot(g_out, w_tap, ((4,), (2,)), ((3,), (1,)), geometry.precision), 0, 3)
  return dx.reshape(*lead, g * in_per_group)


def _tap_weight_grad(window: jax.Array, g_out: jax.Array, geometry: ConvGeometry) -> jax.Array:
  """Σ_nhw window (N,H,W,Ci)ᵀ · g_out (N,H,W,Co) → (Ci/G, Co), per group, full precision."""
  g = geometry.groups
  ci, co = window.shape[-1], g_out.shape[-1]
  if g == 1:
    return _dot(window, g_out, ((0, 1, 2), (0, 1, 2)), ((), ()), geometry.precision)
  lead = window.shape[:3]
  window = window.reshape(*lead, g, ci // g)
  g_out = g_out.reshape(*lead, g, co // g)
  if ci == g:
    acc = full_precision()
    dw = jnp.sum(window.astype(acc) * g_out.astype(acc), axis=(0, 1, 2))[None]
  else:
    dw = jnp.moveaxis(
        _dot(window, g_out, ((0, 1, 2), (0, 1, 2)), ((3,), (3,)), geometry.precision), 0, 1)
  return dw.reshape(ci // g, co)


def _forward_taps(x: jax.Array, w: jax.Array, geometry: ConvGeometry) -> jax.Array:
  out_hw = _output_hw(x.shape[1:3], w.shape[:2], geometry.strides, geometry.padding)
  x_padded = _pad_spatial(x, geometry.padding)
  y = None
  for (i, j), window in _tap_windows(x_padded, w.shape[:2], geometry.strides, out_hw):
    term = _tap_forward(window, w[i, j], geometry)
    y = term if y is None else y + term
  return y.astype(geometry.out_dtype)


def _input_grad_taps(g_out: jax.Array, w: jax.Array, x_shape, geometry: ConvGeometry) -> jax.Array:
  (sh, sw), ((lh, hh), (lw, hw)) = geometry.strides, geometry.padding
  _, ho, wo, _ = g_out.shape
  hp, wp = x_shape[1] + lh + hh, x_shape[2] + lw + hw
  zero = jnp.zeros((), full_precision())
  dx_padded = None
  for i in range(w.shape[0]):
    for j in range(w.shape[1]):
      term = lax.pad(
          _tap_input_grad(g_out, w[i, j], geometry), zero,
          [(0, 0, 0), (i, hp - i - sh * (ho - 1) - 1, sh - 1),
           (j, wp - j - sw * (wo - 1) - 1, sw - 1), (0, 0, 0)])
      dx_padded = term if dx_padded is None else dx_padded + term
  return _pad_spatial(dx_padded, ((-lh, -hh), (-lw, -hw)))


def _weight_grad_taps(x: jax.Array, g_out: jax.Array, w_shape, geometry: ConvGeometry) -> jax.Array:
  x_padded = _pad_spatial(x, geometry.padding)
  taps = [
      _tap_weight_grad(window, g_out, geometry)
      for _, window in _tap_windows(x_padded, w_shape[:2], geometry.strides, g_out.shape[1:3])]
  return jnp.stack(taps).reshape(w_shape)
