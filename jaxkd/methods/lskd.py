"""Logit-standardised KD (Sun et al., CVPR 2024), docs/methods.md §4.

    ẑ = (z − mean_c z) / (std_c z + 1e-7)        (per sample, std with ddof = 1)
    L = w_ce · CE(z_s, y) + w_kd · τ² · mean_i KL(σ(ẑ_t,i / τ) ‖ σ(ẑ_s,i / τ))

This file registers the `ls` transform of KD and DKD (`transforms='ls'`, composed by
targets.py): both models' logits are z-scored, and the factor stays the base τ², not the
effective (τ·std)². CE reads the raw student logits. The `lskd` method is KD with
`transforms='ls'` and the reference's defaults (`--logit-stand --base-temp 2 --kd-weight 9`):
τ = 2, w_kd = 9, w_ce = 0.1. With DKD: `--config.method=dkd --config.dkd.transforms=ls`
(see dkd.py). `logit_std` is also Generous Teacher's temperature k·std (generous.py).
"""

import dataclasses
from typing import Optional

import jax
import jax.numpy as jnp
import ml_collections

from jaxkd import methods
from jaxkd.methods import base, targets
from jaxkd.methods.kd import KnowledgeDistillation


def logit_std(logits: jax.typing.ArrayLike, *, ddof: int = 1,
              where: Optional[jax.typing.ArrayLike] = None) -> jax.Array:
  """Per-sample standard deviation of the logits over classes.

  std_i = sqrt( Σ_{c∈S_i} (z_ic − mean_{S_i} z_i)² / (|S_i| − ddof) ),
  S_i = all C classes, or the classes where `where` is true.

  ddof=1 is PyTorch's default unbiased estimate used by LS-KD. The square
  root has a zero gradient where the variance is 0 (constant logits), so
  neither value nor gradient is NaN there.

  Args:
    logits: (B, C).
    ddof: delta degrees of freedom.
    where: optional boolean (B, C) selecting the classes of each sample
      (Generous Teacher's std over the non-target logits).

  Returns:
    (B,) standard deviations.
  """
  variance = jnp.var(jnp.asarray(logits), axis=-1, ddof=ddof, where=where)
  positive = variance > 0
  return jnp.where(positive, jnp.sqrt(jnp.where(positive, variance, 1.0)), 0.0)


def standardize_logits(logits: jax.typing.ArrayLike, *, eps: float = 1e-7,
                       ddof: int = 1) -> jax.Array:
  """LS-KD per-sample z-score of the logits.

  ẑ_ic = (z_ic − mean_c z_ic) / (std_i + eps), std as in `logit_std`.

  KD on ẑ at temperature τ equals KD on z at per-sample temperature
  τ·(std_i + eps), since softmax is shift-invariant (docs/methods.md §1, item 3).

  Args:
    logits: (B, C).
    eps: added to the std; guards constant logits.
    ddof: delta degrees of freedom of the std.

  Returns:
    (B, C) standardised logits.
  """
  logits = jnp.asarray(logits)
  centred = logits - jnp.mean(logits, axis=-1, keepdims=True)
  return centred / (logit_std(logits, ddof=ddof)[:, None] + eps)


def standardized_target(target: targets.TeacherTarget, labels: jax.Array,
                        hp: ml_collections.ConfigDict
                        ) -> tuple[targets.TeacherTarget, base.Metrics]:
  """The `ls` transform: both models' logits z-scored per sample; T² stays the base τ²."""
  del labels, hp
  return dataclasses.replace(
      target, teacher_logits=standardize_logits(target.teacher_logits),
      student_logits=standardize_logits(target.student_logits)), {}


targets.register_transform("ls", targets.Transform(apply=standardized_target))


@methods.register("lskd")
class LogitStandardizedKD(KnowledgeDistillation):
  default_transforms = "ls"

  @classmethod
  def default_config(cls) -> ml_collections.ConfigDict:
    config = super().default_config()
    config.temperature, config.kd_weight, config.ce_weight = 2.0, 9.0, 0.1
    return config
