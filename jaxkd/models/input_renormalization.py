"""A model that was trained on inputs normalised with other statistics than the run's.

The data pipeline gives x = (p − m_run) / s_run per channel. A model trained (e.g. in
PyTorch) on (p − m_own) / s_own must see

    x_own = (x · s_run + m_run − m_own) / s_own = x · (s_run / s_own) + (m_run − m_own) / s_own

`RenormalizedInput` applies that per-channel affine before the wrapped model. Its variables
are the wrapped model's, unchanged (`nn.share_scope`), so checkpoints, exports and imports
of the model are unaffected.
"""

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp


def renormalization(run_mean: Sequence[float], run_std: Sequence[float],
                    own_mean: Sequence[float], own_std: Sequence[float]
                    ) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
  """(scale, shift) mapping the run's normalised inputs to the model's own; None if equal."""
  if tuple(run_mean) == tuple(own_mean) and tuple(run_std) == tuple(own_std):
    return None
  if not len(run_mean) == len(run_std) == len(own_mean) == len(own_std):
    raise ValueError(f"the model was trained on {len(own_mean)}-channel inputs, the data set "
                     f"has {len(run_mean)} channels")
  scale = tuple(rs / os for rs, os in zip(run_std, own_std))
  shift = tuple((rm - om) / os for rm, om, os in zip(run_mean, own_mean, own_std))
  return scale, shift


class RenormalizedInput(nn.Module):
  """`model(x · scale + shift)`, with `model`'s own variable tree."""
  model: nn.Module
  scale: tuple[float, ...]
  shift: tuple[float, ...]

  def setup(self):
    nn.share_scope(self, self.model)

  @property
  def dtype(self):
    """The wrapped model's compute dtype (methods build matching extra modules)."""
    return self.model.dtype

  @property
  def conv_impl(self) -> str:
    return self.model.conv_impl

  def __call__(self, x: jax.Array, train: bool) -> tuple[jax.Array, jax.Array]:
    scale = jnp.asarray(self.scale, x.dtype)
    shift = jnp.asarray(self.shift, x.dtype)
    return self.model(x * scale + shift, train=train)
