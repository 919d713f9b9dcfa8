"""Dynamic Temperature Distillation ("Preparing Lessons"), docs/methods.md §8.

KD with one temperature per sample, lower for the samples the student finds confusing:

    τ_i = max(τ₀ + β · (mean_j w_j − w_i), τ_min)
    w_i = (1 − cos(z_s,i, z_t,i))^γ   (FLSW)   or   1 / (max_c σ(z_s,i)_c + 1e-3)   (CWSM)
    L = w_ce · CE(z_s, y) + w_kd · mean_i τ_i² · KL(σ(z_t,i / τ_i) ‖ σ(z_s,i / τ_i))

This file registers the `dtd` transform of KD and DKD (`transforms='dtd'`, composed by
targets.py): τ₀ is the section's `temperature`, the same τ_i serves teacher and student,
and the weights are computed under stop-gradient from the target's logits (after KA when
'ka' comes first). The mean runs over the global batch: under jit the sharded batch is one
array, so XLA reduces across devices. The `dtd` method is KD's settings with
`transforms='dtd'`: τ₀ = 4, β = 1, γ = 2 (TextBrewer's example; the paper's tuned values
were not retrieved), τ_min = 1 (jaxkd's clamp: τ_i could reach 0 otherwise). The τ_i²
factor is on (`dtd_t2`) so that each sample's gradient has KD's scale (the KL's gradient
shrinks as 1/τ²); TextBrewer has no factor (`dtd_t2=False`). `dtd_sample_weight=True` also
weights sample i's term by w_i / mean_j w_j (the paper may re-weight focal-style; off:
unverified). Logs `dtd/temperature_mean|min|max`.
"""

import dataclasses
from typing import Literal, Optional

import jax
import jax.numpy as jnp
import ml_collections

from jaxkd import losses, methods
from jaxkd.methods import base, targets
from jaxkd.methods.kd import KnowledgeDistillation
from jaxkd.ranges import NON_NEGATIVE, POSITIVE

WeightKind = Literal["flsw", "cwsm"]

FLSW_NORM_EPS = 1e-4
CWSM_CONFIDENCE_EPS = 1e-3

SETTINGS = {
    "dtd_weight": "flsw",  # 'flsw' | 'cwsm'.
    "dtd_beta": 1.0,  # Range of the temperature change (TextBrewer's example).
    "dtd_gamma": 2.0,  # FLSW focusing exponent (TextBrewer's example).
    "dtd_min_temperature": 1.0,  # Clamp: τ_i ≥ this (the paper's τ_i may go ≤ 0 otherwise).
    "dtd_t2": True,  # Multiply each sample's KL by τ_i² (KD's gradient scale).
    "dtd_sample_weight": False,  # Weight sample i's KD term by w_i / mean_j w_j.
}
RANGES = {
    "dtd_beta": NON_NEGATIVE,  # < 0 would heat the confusing samples instead.
    "dtd_gamma": NON_NEGATIVE,  # An exponent of weights in [0, 2].
    "dtd_min_temperature": POSITIVE,  # Temperatures divide the logits.
}


def confusion_weights(student_logits: jax.typing.ArrayLike, teacher_logits: jax.typing.ArrayLike,
                      *, weight_kind: WeightKind, gamma: float = 2.0) -> jax.Array:
  """DTD per-sample confusion weights w_i, under stop-gradient.

  flsw: w_i = (1 − ⟨v̂_i, t̂_i⟩)^γ,  v̂ = z_s/(‖z_s‖₂ + 1e-4),
        t̂ = z_t/(‖z_t‖₂ + 1e-4)  (one minus cosine similarity);
  cwsm: w_i = 1 / (max_c σ(z_s,i)_c + 1e-3).

  Args:
    student_logits: (B, C).
    teacher_logits: (B, C); unused by cwsm.
    weight_kind: "flsw" or "cwsm".
    gamma: FLSW exponent γ.

  Returns:
    (B,) weights.
  """
  student_logits = jax.lax.stop_gradient(jnp.asarray(student_logits))
  teacher_logits = jax.lax.stop_gradient(jnp.asarray(teacher_logits))
  if weight_kind == "flsw":
    student_dir = student_logits / (
        jnp.linalg.norm(student_logits, axis=-1, keepdims=True) + FLSW_NORM_EPS)
    teacher_dir = teacher_logits / (
        jnp.linalg.norm(teacher_logits, axis=-1, keepdims=True) + FLSW_NORM_EPS)
    dissimilarity = 1.0 - jnp.sum(student_dir * teacher_dir, axis=-1)
    return jnp.power(jnp.maximum(dissimilarity, 0.0), gamma)
  if weight_kind == "cwsm":
    confidence = jnp.max(jax.nn.softmax(student_logits, axis=-1), axis=-1)
    return 1.0 / (confidence + CWSM_CONFIDENCE_EPS)
  raise ValueError(f"unknown DTD weight kind {weight_kind!r}; valid: flsw, cwsm")


def sample_temperatures(student_logits: jax.typing.ArrayLike,
                        teacher_logits: jax.typing.ArrayLike, *, base_temperature: float,
                        beta: float, weight_kind: WeightKind, gamma: float = 2.0,
                        min_temperature: float = 1.0,
                        mask: Optional[jax.typing.ArrayLike] = None) -> jax.Array:
  """DTD per-sample temperatures.

  τ_i = max(τ_0 + β · (mean_j w_j − w_i), τ_min), w from `confusion_weights`.

  A more confused sample (larger w_i) gets a lower temperature, i.e. a
  sharper target. The mean runs over the samples with mask_j true. Under
  jit with a batch-sharded input, `jnp.mean` over the batch axis is the
  global-batch mean (XLA inserts the cross-device reduction), so τ matches
  single-device training on the same global batch.

  Args:
    student_logits: (B, C).
    teacher_logits: (B, C), after any KA transform (TextBrewer order).
    base_temperature: τ_0.
    beta: β.
    weight_kind: "flsw" or "cwsm".
    gamma: FLSW exponent γ.
    min_temperature: τ_min, the clamp that keeps τ_i positive.
    mask: optional boolean (B,); False marks padded samples, which are
      excluded from the batch mean (their τ_i is still returned).

  Returns:
    (B,) temperatures, constant w.r.t. both inputs' gradients.
  """
  weights = confusion_weights(student_logits, teacher_logits, weight_kind=weight_kind,
                              gamma=gamma)
  temperatures = base_temperature + beta * (losses.batch_mean(weights, mask) - weights)
  return jnp.maximum(temperatures, min_temperature)


def tempered_target(target: targets.TeacherTarget, labels: jax.Array,
                    hp: ml_collections.ConfigDict) -> tuple[targets.TeacherTarget, base.Metrics]:
  """The `dtd` transform: one temperature τ_i per sample, shared by teacher and student."""
  del labels
  tau = sample_temperatures(
      target.student_logits, target.teacher_logits, base_temperature=target.temperature,
      beta=hp.dtd_beta, weight_kind=hp.dtd_weight, gamma=hp.dtd_gamma,
      min_temperature=hp.dtd_min_temperature)
  target = dataclasses.replace(target, temperature=tau, teacher_temperature=tau,
                               t2_factor=tau**2 if hp.dtd_t2 else jnp.ones_like(tau))
  if hp.dtd_sample_weight:
    weights = confusion_weights(target.student_logits, target.teacher_logits,
                                weight_kind=hp.dtd_weight, gamma=hp.dtd_gamma)
    target = dataclasses.replace(target, sample_weight=weights / jnp.mean(weights))
  return target, {"dtd/temperature_mean": jnp.mean(tau), "dtd/temperature_min": jnp.min(tau),
                  "dtd/temperature_max": jnp.max(tau)}


def check_settings(hp: ml_collections.ConfigDict, section: str, names: tuple[str, ...],
                   accepts_distribution: bool) -> None:
  """The weight kind is known."""
  del names, accepts_distribution
  if hp.dtd_weight not in ("flsw", "cwsm"):
    raise ValueError(f"config.{section}.dtd_weight must be 'flsw' or 'cwsm', "
                     f"got '{hp.dtd_weight}'")


targets.register_transform("dtd", targets.Transform(
    apply=tempered_target, defaults=SETTINGS, ranges=RANGES, check=check_settings,
    traced=("dtd_beta", "dtd_gamma", "dtd_min_temperature")))


@methods.register("dtd")
class DynamicTemperature(KnowledgeDistillation):
  default_transforms = "dtd"
