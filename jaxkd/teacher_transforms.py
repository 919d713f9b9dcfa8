"""Pure functions that reshape the teacher's supervision before a KD loss.

These are the teacher-side building blocks of methods.md §4, §8 and §9:
logit standardisation (LS-KD), per-sample logit std (Generous Teacher's
temperature k·std), Knowledge Adjustment (probability shift and label
smoothing for wrong samples) and Dynamic Temperature Distillation.
All take (B, C) logits and int (B,) labels; none applies stop-gradient
except where a method's definition requires it (DTD's weights).
"""

from typing import Literal, Optional

import jax
import jax.numpy as jnp

from jaxkd.losses import masked_mean

Array = jax.Array
ArrayLike = jax.typing.ArrayLike
WeightKind = Literal["flsw", "cwsm"]

_FLSW_NORM_EPS = 1e-4
_CWSM_CONFIDENCE_EPS = 1e-3


def logit_std(
    logits: ArrayLike, *, ddof: int = 1, where: Optional[ArrayLike] = None
) -> Array:
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
  logits = jnp.asarray(logits)
  variance = jnp.var(logits, axis=-1, ddof=ddof, where=where)
  positive = variance > 0
  return jnp.where(positive, jnp.sqrt(jnp.where(positive, variance, 1.0)), 0.0)


def standardize_logits(
    logits: ArrayLike, *, eps: float = 1e-7, ddof: int = 1
) -> Array:
  """LS-KD per-sample z-score of the logits.

  ẑ_ic = (z_ic − mean_c z_ic) / (std_i + eps), std as in `logit_std`.

  KD on ẑ at temperature τ equals KD on z at per-sample temperature
  τ·(std_i + eps), since softmax is shift-invariant (methods.md §1, item 3).

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


def probability_shift(
    teacher_logits: ArrayLike, labels: ArrayLike
) -> tuple[Array, Array]:
  """KA probability shift: swap the teacher's argmax value with the target's.

  With k_i = argmax_c z_ic:  z'_i,k_i = z_i,y_i,  z'_i,y_i = z_i,k_i,
  z'_ic = z_ic otherwise. For a correct teacher (k_i = y_i) this is the
  identity. Softmax is permutation-equivariant, so shifting logits equals
  shifting (softened) probabilities (methods.md §1, item 2).

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
  target_value = jnp.sum(
      jnp.where(is_target, teacher_logits, 0.0), axis=-1, keepdims=True
  )
  shifted = jnp.where(
      is_predicted,
      target_value,
      jnp.where(is_target, predicted_value, teacher_logits),
  )
  return shifted, predicted != labels


def label_smoothing_for_wrong(
    teacher_logits: ArrayLike,
    labels: ArrayLike,
    temperature: ArrayLike,
    rho: float,
) -> tuple[Array, Array]:
  """KA label-smoothing regularisation: target log-probs for `kl_to_target`.

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
      is_target,
      jnp.log(rho),
      jnp.log((1.0 - rho) / (num_classes - 1)),
  ).astype(teacher_log_probs.dtype)
  was_wrong = jnp.argmax(teacher_logits, axis=-1) != labels
  target_log_probs = jnp.where(
      was_wrong[:, None], smoothed_log_probs, teacher_log_probs
  )
  return target_log_probs, was_wrong


def confusion_weights(
    student_logits: ArrayLike,
    teacher_logits: ArrayLike,
    *,
    weight_kind: WeightKind,
    gamma: float = 2.0,
) -> Array:
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
        jnp.linalg.norm(student_logits, axis=-1, keepdims=True) + _FLSW_NORM_EPS
    )
    teacher_dir = teacher_logits / (
        jnp.linalg.norm(teacher_logits, axis=-1, keepdims=True) + _FLSW_NORM_EPS
    )
    dissimilarity = 1.0 - jnp.sum(student_dir * teacher_dir, axis=-1)
    return jnp.power(jnp.maximum(dissimilarity, 0.0), gamma)
  if weight_kind == "cwsm":
    confidence = jnp.max(jax.nn.softmax(student_logits, axis=-1), axis=-1)
    return 1.0 / (confidence + _CWSM_CONFIDENCE_EPS)
  raise ValueError(f"unknown DTD weight kind {weight_kind!r}")


def dynamic_temperatures(
    student_logits: ArrayLike,
    teacher_logits: ArrayLike,
    *,
    base_temperature: float,
    beta: float,
    weight_kind: WeightKind,
    gamma: float = 2.0,
    min_temperature: float = 1.0,
    mask: Optional[ArrayLike] = None,
) -> Array:
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
  weights = confusion_weights(
      student_logits, teacher_logits, weight_kind=weight_kind, gamma=gamma
  )
  mean_weight = masked_mean(weights, mask)
  temperatures = base_temperature + beta * (mean_weight - weights)
  return jnp.maximum(temperatures, min_temperature)
