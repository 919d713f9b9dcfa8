"""The float type of jaxkd's full-precision values: float32, or float64 under jax_enable_x64.

Parameters, logits, losses and the accumulators of `jaxkd.ops.cpu_conv` are full precision;
activations are computed in the run's compute type (`config.half_precision`: bf16). Training
runs never enable 64-bit floats; the float64 parity check against PyTorch
(`benchmarks/parity.py`) does, and then the same code computes everything in float64.
"""

import jax
import jax.numpy as jnp


def full_precision() -> jnp.dtype:
  """float64 when `jax_enable_x64` is set when this is called (at trace time), else float32."""
  return jax.dtypes.canonicalize_dtype(jnp.float64)
