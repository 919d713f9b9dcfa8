"""Teacher targets and the transforms that compose on them, for the logit-based methods.

A `TeacherTarget` is what a logit loss (KD's softened KL, DKD's decoupled KL) compares the
student with: the teacher logits (or a ready target distribution), the student logits as
the loss sees them, per-sample temperatures and the factor that replaces T². Transforms
rewrite it, left to right, as named by a method's `transforms` setting ('ka,dtd'):

- `ka` (Knowledge Adjustment, methods.md §8): for samples the teacher gets wrong,
  'ps' swaps the teacher's top logit with the target's (probability shift);
  'lsr' replaces the teacher's distribution by ρ on y and (1 − ρ)/(C − 1) elsewhere.
- `dtd` (Dynamic Temperature Distillation, §8): τ_i = τ₀ + β(mean_j w_j − w_i), clamped
  at `dtd_min_temperature`, with w the FLSW weight (1 − cos(z_s, z_t))^γ or the CWSM
  weight 1 / (max σ(z_s) + 1e-3). The mean runs over the *global* batch (under jit the
  sharded batch is one array). The KL factor becomes τ_i² per sample (`dtd_t2=True`,
  so that the gradient scale matches KD's; TextBrewer uses no factor: `dtd_t2=False`).
  `dtd_sample_weight=True` also weights each sample's KD term by w_i / mean_j w_j (the
  paper may re-weight focal-style, methods.md §8 [memory]; off by default, unverified).
- `ls` (logit standardisation, LS-KD §4): z ← (z − mean z)/(std z + 1e-7) for teacher
  and student (std with ddof=1); the factor stays the base τ².

Order matters and follows TextBrewer: KA before DTD, so DTD's weights see the shifted
teacher. 'lsr' produces a distribution, not logits: only KD's KL can consume it.
"""

import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp
import ml_collections

from jaxkd import losses, teacher_transforms
from jaxkd.methods import base
from jaxkd.ranges import NON_NEGATIVE, POSITIVE, PROBABILITY

TRANSFORMS = ("ka", "dtd", "ls")


def transform_defaults() -> dict:
  """The settings of every transform, present in each logit method's config section."""
  return {
      "transforms": "",  # Comma-separated, applied left to right: e.g. 'ka,dtd'.
      "ka_variant": "ps",  # 'ps' (probability shift) | 'lsr' (label smoothing).
      "ka_rho": 0.9,  # LSR: target-class probability (KD_Lib's default; paper's unverified).
      "dtd_weight": "flsw",  # 'flsw' | 'cwsm'.
      "dtd_beta": 1.0,  # Range of the temperature change (TextBrewer's example).
      "dtd_gamma": 2.0,  # FLSW focusing exponent (TextBrewer's example).
      "dtd_min_temperature": 1.0,  # Clamp: τ_i ≥ this (the paper's τ_i may go ≤ 0 otherwise).
      "dtd_t2": True,  # Multiply each sample's KL by τ_i² (KD's gradient scale).
      "dtd_sample_weight": False,  # Weight sample i's KD term by w_i / mean_j w_j.
  }


def transform_ranges() -> dict:
  """The valid range of each numeric transform setting (`transform_defaults`)."""
  return {
      "ka_rho": PROBABILITY,  # A probability.
      "dtd_beta": NON_NEGATIVE,  # < 0 would heat the confusing samples instead.
      "dtd_gamma": NON_NEGATIVE,  # An exponent of weights in [0, 2].
      "dtd_min_temperature": POSITIVE,  # Temperatures divide the logits.
  }


@dataclasses.dataclass(frozen=True)
class TeacherTarget:
  """The teacher side of a logit loss, and the student logits it is compared with.

  `target_log_probs`, when set, replaces σ(teacher_logits / teacher_temperature);
  `sample_weight`, when set, multiplies each sample's distillation term.
  """
  teacher_logits: jax.Array
  student_logits: jax.Array
  temperature: jax.Array  # Student temperature: scalar or (B,).
  teacher_temperature: jax.Array
  t2_factor: jax.Array
  target_log_probs: jax.Array | None = None
  sample_weight: jax.Array | None = None  # (B,)


Transform = Callable[[TeacherTarget, jax.Array, ml_collections.ConfigDict],
                     tuple[TeacherTarget, dict[str, jax.Array]]]


def knowledge_adjustment(target: TeacherTarget, labels: jax.Array,
                         hp: ml_collections.ConfigDict):
  """KA: correct the samples whose teacher argmax is not the label (PS or LSR)."""
  if hp.ka_variant == "ps":
    shifted, wrong = teacher_transforms.probability_shift(target.teacher_logits, labels)
    target = dataclasses.replace(target, teacher_logits=shifted)
  else:
    log_probs, wrong = teacher_transforms.label_smoothing_for_wrong(
        target.teacher_logits, labels, target.teacher_temperature, hp.ka_rho)
    target = dataclasses.replace(target, target_log_probs=log_probs)
  return target, {"ka/adjusted_fraction": jnp.mean(wrong.astype(jnp.float32))}


def dynamic_temperature(target: TeacherTarget, labels: jax.Array,
                        hp: ml_collections.ConfigDict):
  """DTD: one temperature per sample, shared by teacher and student."""
  del labels
  tau = teacher_transforms.dynamic_temperatures(
      target.student_logits, target.teacher_logits, base_temperature=target.temperature,
      beta=hp.dtd_beta, weight_kind=hp.dtd_weight, gamma=hp.dtd_gamma,
      min_temperature=hp.dtd_min_temperature)
  target = dataclasses.replace(target, temperature=tau, teacher_temperature=tau,
                               t2_factor=tau**2 if hp.dtd_t2 else jnp.ones_like(tau))
  if hp.dtd_sample_weight:
    weights = teacher_transforms.confusion_weights(
        target.student_logits, target.teacher_logits, weight_kind=hp.dtd_weight,
        gamma=hp.dtd_gamma)
    target = dataclasses.replace(target, sample_weight=weights / jnp.mean(weights))
  return target, {"dtd/temperature_mean": jnp.mean(tau), "dtd/temperature_min": jnp.min(tau),
                  "dtd/temperature_max": jnp.max(tau)}


def logit_standardization(target: TeacherTarget, labels: jax.Array,
                          hp: ml_collections.ConfigDict):
  """LS: z-score both models' logits per sample; T² stays the base temperature's."""
  del labels, hp
  return dataclasses.replace(
      target, teacher_logits=teacher_transforms.standardize_logits(target.teacher_logits),
      student_logits=teacher_transforms.standardize_logits(target.student_logits)), {}


_TRANSFORM_FNS: dict[str, Transform] = {
    "ka": knowledge_adjustment, "dtd": dynamic_temperature, "ls": logit_standardization}


def parse_transforms(spec: str) -> tuple[str, ...]:
  names = tuple(part.strip() for part in spec.split(",") if part.strip())
  unknown = [n for n in names if n not in TRANSFORMS]
  if unknown:
    raise ValueError(f"unknown teacher transform(s) {unknown}; valid: {', '.join(TRANSFORMS)}")
  return names


def validate_transforms(hp: ml_collections.ConfigDict, section: str, accepts_distribution: bool):
  """Raises ValueError when a method's transform settings cannot work."""
  names = parse_transforms(hp.transforms)
  if hp.ka_variant not in ("ps", "lsr"):
    raise ValueError(f"config.{section}.ka_variant must be 'ps' or 'lsr', got '{hp.ka_variant}'")
  if hp.dtd_weight not in ("flsw", "cwsm"):
    raise ValueError(f"config.{section}.dtd_weight must be 'flsw' or 'cwsm', "
                     f"got '{hp.dtd_weight}'")
  if "ka" in names and hp.ka_variant == "lsr":
    if not accepts_distribution:
      raise ValueError(f"config.{section}: KA's 'lsr' gives a target distribution, which this "
                       "loss cannot decouple; use ka_variant='ps'")
    if names[-1] != "ka":
      raise ValueError(f"config.{section}: KA 'lsr' replaces the teacher's distribution, so it "
                       "must be the last transform")


def build_target(teacher_logits: jax.Array, student_logits: jax.Array, labels: jax.Array,
                 hp: ml_collections.ConfigDict) -> tuple[TeacherTarget, dict[str, jax.Array]]:
  """The teacher target at `hp.temperature`, after `hp.transforms` in order.

  Logits are taken in float32; the teacher's carry no gradient.
  """
  temperature = jnp.asarray(hp.temperature, jnp.float32)
  target = TeacherTarget(
      teacher_logits=jax.lax.stop_gradient(teacher_logits.astype(jnp.float32)),
      student_logits=student_logits.astype(jnp.float32),
      temperature=temperature, teacher_temperature=temperature, t2_factor=temperature**2)
  metrics = {}
  for name in parse_transforms(hp.transforms):
    target, new_metrics = _TRANSFORM_FNS[name](target, labels, hp)
    metrics.update(new_metrics)
  return target, metrics


def weighted(per_sample: jax.Array, target: TeacherTarget) -> jax.Array:
  """`per_sample` (B,) times the target's sample weight, if it has one."""
  return per_sample if target.sample_weight is None else per_sample * target.sample_weight


def kd_term(target: TeacherTarget) -> jax.Array:
  """Per-sample weight_i · t2_factor_i · KL(target_i ‖ σ(z_s,i / T_s,i)), shape (B,)."""
  if target.target_log_probs is not None:
    kl = losses.kl_to_target(target.target_log_probs, target.student_logits,
                             target.temperature, t2_factor=target.t2_factor)
  else:
    kl = losses.softened_kl(target.teacher_logits, target.student_logits, target.temperature,
                            teacher_temperature=target.teacher_temperature,
                            t2_factor=target.t2_factor)
  return weighted(kl, target)


def decoupled_terms(target: TeacherTarget, labels: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Per-sample (TCKD, NCKD) of DKD on the target, each weighted like `kd_term`."""
  tckd, nckd = losses.decoupled_kl(
      target.teacher_logits, target.student_logits, labels, target.temperature,
      teacher_temperature=target.teacher_temperature, t2_factor=target.t2_factor)
  return weighted(tckd, target), weighted(nckd, target)
