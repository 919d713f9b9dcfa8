"""Knowledge Adjustment ("Preparing Lessons", Wen, Lai & Qian), docs/methods.md §8.

KD whose teacher is corrected on the samples it gets wrong (k_i = argmax_c z_t,ic ≠ y_i):

    L = w_ce · CE(z_s, y) + w_kd · T² · mean_i KL(p_t,i ‖ σ(z_s,i / T))
    PS:  p_t,i = σ(z'_t,i / T),  z'_t,i = z_t,i with its values at k_i and y_i swapped (default)
    LSR: p_t,i = ρ·onehot(y_i) + (1 − ρ)/(C − 1)·(1 − onehot(y_i)) if k_i ≠ y_i (ρ = 0.9),
         else σ(z_t,i / T)

This file registers the `ka` transform of KD and DKD (`transforms='ka'`, composed by
targets.py): PS rewrites the teacher logits, so a transform after it sees the shifted
teacher (KA ▶ DTD, TextBrewer's order); LSR replaces the teacher's distribution, so it
must come last and only KD's KL can take it. The `ka` method is KD's settings (T = 4,
w_ce = 0.1, w_kd = 0.9) with `transforms='ka'`; it logs the fraction of adjusted samples
as `ka/adjusted_fraction`. Add 'dtd' after it for KA ▶ DTD.
"""

import dataclasses

import jax
import jax.numpy as jnp
import ml_collections

from jaxkd import methods
from jaxkd.methods import base, targets
from jaxkd.methods.kd import KnowledgeDistillation
from jaxkd.ranges import PROBABILITY

SETTINGS = {
    "ka_variant": "ps",  # 'ps' (probability shift) | 'lsr' (label smoothing).
    "ka_rho": 0.9,  # LSR: target-class probability (KD_Lib's default; paper's unverified).
}


def probability_shift(teacher_logits: jax.typing.ArrayLike,
                      labels: jax.typing.ArrayLike) -> tuple[jax.Array, jax.Array]:
  """KA probability shift: swap the teacher's argmax value with the target's.

  With k_i = argmax_c z_ic:  z'_i,k_i = z_i,y_i,  z'_i,y_i = z_i,k_i,
  z'_ic = z_ic otherwise. For a correct teacher (k_i = y_i) this is the
  identity. Softmax is permutation-equivariant, so shifting logits equals
  shifting (softened) probabilities (docs/methods.md §1, item 2).

  Args:
    teacher_logits: (B, C).
    labels: int (B,).

  Returns:
    (shifted_logits (B, C), was_wrong bool (B,)), where was_wrong_i is
    k_i ≠ y_i.
  """
  teacher_logits = jnp.asarray(teacher_logits)
  num_classes = teacher_logits.shape[-1]
  predicted = jnp.argmax(teacher_logits, axis=-1)
  is_predicted = jax.nn.one_hot(predicted, num_classes, dtype=bool)
  is_target = jax.nn.one_hot(labels, num_classes, dtype=bool)
  predicted_value = jnp.max(teacher_logits, axis=-1, keepdims=True)
  target_value = jnp.sum(jnp.where(is_target, teacher_logits, 0.0), axis=-1, keepdims=True)
  shifted = jnp.where(is_predicted, target_value,
                      jnp.where(is_target, predicted_value, teacher_logits))
  return shifted, predicted != labels


def label_smoothing_for_wrong(teacher_logits: jax.typing.ArrayLike,
                              labels: jax.typing.ArrayLike,
                              temperature: jax.typing.ArrayLike,
                              rho: float) -> tuple[jax.Array, jax.Array]:
  """KA label-smoothing regularisation: target log-probs for `losses.kl_to_target`.

  log p_i = log σ(z_t,i / T)                   if argmax z_t,i = y_i,
  log p_ic = log ρ if c = y_i, else log((1 − ρ)/(C − 1))   otherwise.

  Args:
    teacher_logits: (B, C).
    labels: int (B,).
    temperature: T: scalar, (B,) or (B, 1).
    rho: probability given to the true class of a wrong sample, in (0, 1];
      ρ = 1 yields −inf off the target, which `kl_to_target` handles.

  Returns:
    (target_log_probs (B, C), was_wrong bool (B,)).
  """
  teacher_logits = jnp.asarray(teacher_logits)
  num_classes = teacher_logits.shape[-1]
  temperature = jnp.asarray(temperature)
  if temperature.ndim == 1:
    temperature = temperature[:, None]
  teacher_log_probs = jax.nn.log_softmax(teacher_logits / temperature, axis=-1)
  is_target = jax.nn.one_hot(labels, num_classes, dtype=bool)
  smoothed_log_probs = jnp.where(
      is_target, jnp.log(rho), jnp.log((1.0 - rho) / (num_classes - 1))
  ).astype(teacher_log_probs.dtype)
  was_wrong = jnp.argmax(teacher_logits, axis=-1) != labels
  target_log_probs = jnp.where(was_wrong[:, None], smoothed_log_probs, teacher_log_probs)
  return target_log_probs, was_wrong


def adjusted_target(target: targets.TeacherTarget, labels: jax.Array,
                    hp: ml_collections.ConfigDict) -> tuple[targets.TeacherTarget, base.Metrics]:
  """The `ka` transform: the target corrected where the teacher is wrong (PS or LSR)."""
  if hp.ka_variant == "ps":
    shifted, wrong = probability_shift(target.teacher_logits, labels)
    target = dataclasses.replace(target, teacher_logits=shifted)
  else:
    log_probs, wrong = label_smoothing_for_wrong(
        target.teacher_logits, labels, target.teacher_temperature, hp.ka_rho)
    target = dataclasses.replace(target, target_log_probs=log_probs)
  return target, {"ka/adjusted_fraction": jnp.mean(wrong.astype(jnp.float32))}


def check_settings(hp: ml_collections.ConfigDict, section: str, names: tuple[str, ...],
                   accepts_distribution: bool) -> None:
  """The variant is known; 'lsr' comes last, in a loss that takes a distribution."""
  if hp.ka_variant not in ("ps", "lsr"):
    raise ValueError(f"config.{section}.ka_variant must be 'ps' or 'lsr', got '{hp.ka_variant}'")
  if "ka" in names and hp.ka_variant == "lsr":
    if not accepts_distribution:
      raise ValueError(f"config.{section}: KA's 'lsr' gives a target distribution, which this "
                       "loss cannot decouple; use ka_variant='ps'")
    if names[-1] != "ka":
      raise ValueError(f"config.{section}: KA 'lsr' replaces the teacher's distribution, so it "
                       "must be the last transform")


targets.register_transform("ka", targets.Transform(
    apply=adjusted_target, defaults=SETTINGS, ranges={"ka_rho": PROBABILITY},
    check=check_settings, traced=("ka_rho",)))


@methods.register("ka")
class KnowledgeAdjustment(KnowledgeDistillation):
  default_transforms = "ka"
