"""Per-sample distillation losses shared by every jaxkd method.

Conventions (docs/methods.md §1):
  * logits have shape (B, C), integer labels shape (B,);
  * every per-sample loss returns shape (B,) so callers can weight it, and
    batch reductions go through `batch_mean` (sum over classes, mean over the
    batch, i.e. PyTorch's ``reduction='batchmean'``);
  * KL(p ‖ q) = Σ_c p_c (log p_c − log q_c), with terms where p_c = 0
    contributing exactly 0 (also in the gradient);
  * a temperature may be a scalar, a per-sample vector (B,) or a column
    (B, 1); it always divides the logits before the softmax.

Everything is computed from log-softmax / log-sum-exp, never from the log of
a probability, so logits as large as ±1e4 give finite losses and gradients.
"""

from typing import Any, Optional

import jax
import jax.numpy as jnp

Array = jax.Array
ArrayLike = jax.typing.ArrayLike
PyTree = Any


def batch_mean(values: ArrayLike, mask: Optional[ArrayLike] = None) -> Array:
  """Mean of per-sample values over the batch, or over the samples `mask` selects.

  batch_mean(v) = (1/B) Σ_i v_i;  batch_mean(v, m) = Σ_i m_i v_i / max(Σ_i m_i, 1).

  Args:
    values: per-sample values, shape (B,).
    mask: optional boolean (B,); False marks padded samples.

  Returns:
    A scalar. An all-False mask gives 0.
  """
  values = jnp.asarray(values)
  if mask is None:
    return jnp.mean(values)
  weights = jnp.asarray(mask, dtype=values.dtype)
  total = jnp.sum(values * weights)
  return total / jnp.maximum(jnp.sum(weights), 1)


def _as_column(value: ArrayLike) -> Array:
  """Reshapes a scalar, (B,) or (B, 1) value so it broadcasts against (B, C)."""
  value = jnp.asarray(value)
  if value.ndim == 1:
    return value[:, None]
  if value.ndim > 2 or (value.ndim == 2 and value.shape[1] != 1):
    raise ValueError(
        f"expected a scalar, (B,) or (B, 1) value, got {value.shape}"
    )
  return value


def _as_per_sample(value: ArrayLike) -> Array:
  """Reshapes a scalar, (B,) or (B, 1) value so it broadcasts against (B,)."""
  column = _as_column(value)
  return column[:, 0] if column.ndim == 2 else column


def _kl_from_log_probs(
    target_log_probs: Array, model_log_probs: Array
) -> Array:
  """KL(p ‖ q) = Σ_c p_c (log p_c − log q_c) per row, from log-probabilities.

  Classes with p_c = 0 (including log p_c = −inf) contribute 0, and their
  entries of `model_log_probs` may be −inf; both operands are replaced by 0
  there before the subtraction so that neither value nor gradient is NaN.
  """
  target_probs = jnp.exp(target_log_probs)
  support = target_probs > 0
  safe_target = jnp.where(support, target_log_probs, 0.0)
  safe_model = jnp.where(support, model_log_probs, 0.0)
  terms = jnp.where(support, target_probs * (safe_target - safe_model), 0.0)
  return jnp.sum(terms, axis=-1)


def cross_entropy(
    logits: ArrayLike, labels: ArrayLike, *, label_smoothing: float = 0.0
) -> Array:
  """Per-sample cross-entropy with optional label smoothing.

  CE_i = −Σ_c q_ic log σ(z_i)_c,  q_i = (1 − ε)·onehot(y_i) + ε / C.

  Args:
    logits: (B, C).
    labels: int (B,).
    label_smoothing: ε ∈ [0, 1].

  Returns:
    (B,) losses.
  """
  logits = jnp.asarray(logits)
  log_probs = jax.nn.log_softmax(logits, axis=-1)
  num_classes = logits.shape[-1]
  targets = jax.nn.one_hot(labels, num_classes, dtype=log_probs.dtype)
  # No branch on ε: it may be traced (a sweep); ε = 0 leaves the one-hot targets exact.
  targets = (1.0 - label_smoothing) * targets + label_smoothing / num_classes
  return -jnp.sum(targets * log_probs, axis=-1)


def kl_to_target(
    target_log_probs: ArrayLike,
    student_logits: ArrayLike,
    temperature: ArrayLike,
    *,
    t2_factor: Optional[ArrayLike] = None,
) -> Array:
  """Softened KL from a given target distribution to the student.

  L_i = f_i · KL(p_i ‖ σ(z_s,i / T_i)),  p_i = exp(target_log_probs_i),
  f = `t2_factor` (default T²).

  Used by transforms that produce a distribution rather than logits (KA's
  label-smoothing replacement, SKD's simplified target).

  Args:
    target_log_probs: (B, C) log-probabilities; −inf marks zero mass.
    student_logits: (B, C).
    temperature: student temperature T: scalar, (B,) or (B, 1).
    t2_factor: multiplier of the KL: scalar, (B,) or (B, 1); default T².

  Returns:
    (B,) losses.
  """
  temperature = _as_column(temperature)
  student_log_probs = jax.nn.log_softmax(
      jnp.asarray(student_logits) / temperature, axis=-1
  )
  kl = _kl_from_log_probs(jnp.asarray(target_log_probs), student_log_probs)
  factor = jnp.square(temperature) if t2_factor is None else t2_factor
  return _as_per_sample(factor) * kl


def softened_kl(
    teacher_logits: ArrayLike,
    student_logits: ArrayLike,
    temperature: ArrayLike,
    *,
    teacher_temperature: Optional[ArrayLike] = None,
    t2_factor: Optional[ArrayLike] = None,
) -> Array:
  """Hinton KD loss per sample.

  L_i = f_i · KL(σ(z_t,i / T_t,i) ‖ σ(z_s,i / T_i)),  f = `t2_factor`
  (default T², the student temperature squared), T_t defaults to T.

  Per-sample temperatures cover DTD (τ_i) and LS-KD written as τ·std(z_i);
  LS-KD passes `t2_factor=τ**2` (the base temperature, docs/methods.md §4).
  No stop-gradient is applied here: the caller decides whether the teacher
  is frozen.

  Args:
    teacher_logits: (B, C).
    student_logits: (B, C).
    temperature: student temperature T: scalar, (B,) or (B, 1).
    teacher_temperature: teacher temperature T_t, same shapes; default T.
    t2_factor: multiplier of the KL: scalar, (B,) or (B, 1); default T².

  Returns:
    (B,) losses.
  """
  if teacher_temperature is None:
    teacher_temperature = temperature
  teacher_log_probs = jax.nn.log_softmax(
      jnp.asarray(teacher_logits) / _as_column(teacher_temperature), axis=-1
  )
  return kl_to_target(
      teacher_log_probs, student_logits, temperature, t2_factor=t2_factor
  )


def _decoupled_log_probs(
    logits: Array, target_mask: Array, temperature: Array
) -> tuple[Array, Array]:
  """Binary (target, rest) and non-target log-probabilities at temperature T.

  log b = [z_y/T − LSE(z/T), LSE_{c≠y}(z/T) − LSE(z/T)]        (B, 2)
  log p̃_c = z_c/T − LSE_{k≠y}(z_k/T) for c ≠ y, −inf at c = y   (B, C)
  """
  scaled = logits / temperature
  non_target = ~target_mask
  log_total = jax.nn.logsumexp(scaled, axis=-1)
  log_rest = jax.nn.logsumexp(scaled, axis=-1, where=non_target)
  target_logit = jnp.sum(jnp.where(target_mask, scaled, 0.0), axis=-1)
  binary = jnp.stack([target_logit - log_total, log_rest - log_total], axis=-1)
  non_target_log_probs = jnp.where(
      non_target, scaled - log_rest[:, None], -jnp.inf
  )
  return binary, non_target_log_probs


def decoupled_kl(
    teacher_logits: ArrayLike,
    student_logits: ArrayLike,
    labels: ArrayLike,
    temperature: ArrayLike,
    *,
    teacher_temperature: Optional[ArrayLike] = None,
    t2_factor: Optional[ArrayLike] = None,
) -> tuple[Array, Array]:
  """DKD's target-class and non-target-class KL terms per sample (docs/methods.md §3).

  TCKD_i = f_i · KL(b_t,i ‖ b_s,i),   b = [p_y, 1 − p_y],  p = σ(z/T)
  NCKD_i = f_i · KL(p̃_t,i ‖ p̃_s,i),  p̃_c = softmax_{c≠y}(z_c/T)
  f = `t2_factor` (default T², the student temperature squared).

  With equal temperatures KL(p_t ‖ p_s) = TCKD/f + (1 − p_t[y])·NCKD/f.
  Both terms are computed in log-sum-exp form (no log of a probability and
  no −1000 mask), so they stay finite for logits of ±1e4; with C = 2 NCKD is
  exactly 0. Teacher and student temperatures may differ and be per-sample
  (Generous Teacher uses T_i = k·std(z_i) for each model).

  Args:
    teacher_logits: (B, C).
    student_logits: (B, C).
    labels: int (B,).
    temperature: student temperature T: scalar, (B,) or (B, 1).
    teacher_temperature: teacher temperature, same shapes; default T.
    t2_factor: multiplier of both terms: scalar, (B,) or (B, 1); default T².

  Returns:
    (tckd, nckd), each (B,).
  """
  teacher_logits = jnp.asarray(teacher_logits)
  student_logits = jnp.asarray(student_logits)
  if teacher_temperature is None:
    teacher_temperature = temperature
  student_temperature = _as_column(temperature)
  target_mask = jax.nn.one_hot(labels, student_logits.shape[-1], dtype=bool)
  teacher_binary, teacher_rest = _decoupled_log_probs(
      teacher_logits, target_mask, _as_column(teacher_temperature)
  )
  student_binary, student_rest = _decoupled_log_probs(
      student_logits, target_mask, student_temperature
  )
  factor = jnp.square(student_temperature) if t2_factor is None else t2_factor
  factor = _as_per_sample(factor)
  tckd = factor * _kl_from_log_probs(teacher_binary, student_binary)
  nckd = factor * _kl_from_log_probs(teacher_rest, student_rest)
  return tckd, nckd


def dkd_warmup_factor(epoch: ArrayLike, warmup_epochs: float) -> Array:
  """DKD loss warmup multiplier: min(epoch / warmup_epochs, 1).

  Args:
    epoch: current (1-indexed, possibly fractional) epoch; may be traced.
    warmup_epochs: number of warmup epochs, > 0 (1 means no warmup).

  Returns:
    A scalar in (0, 1].
  """
  if warmup_epochs <= 0:
    raise ValueError(f"warmup_epochs must be positive, got {warmup_epochs}")
  return jnp.minimum(jnp.asarray(epoch, dtype=float) / warmup_epochs, 1.0)


def feature_mse(
    student_features: ArrayLike, teacher_features: ArrayLike
) -> Array:
  """Feature regression loss of SimKD/ATSC.

  L = (1/N) Σ_n (h_n − f_t,n)², the mean over all N = B·H·W·C elements.

  Args:
    student_features: projected student features h, any shape.
    teacher_features: teacher features f_t, same shape.

  Returns:
    A scalar.
  """
  student_features = jnp.asarray(student_features)
  teacher_features = jnp.asarray(teacher_features)
  if student_features.shape != teacher_features.shape:
    raise ValueError(
        f"feature shapes differ: {student_features.shape} vs "
        f"{teacher_features.shape}"
    )
  return jnp.mean(jnp.square(student_features - teacher_features))


def anchor_mask(params: PyTree) -> PyTree:
  """Selects the leaves ATSC anchors to their initial values.

  True for leaves with ndim ≥ 2 (conv and Dense kernels), False for 1-D
  leaves (BatchNorm scale/bias, biases, including the classifier bias).

  Args:
    params: a parameter pytree.

  Returns:
    A pytree of Python bools with the structure of `params`.
  """
  return jax.tree.map(lambda leaf: jnp.ndim(leaf) >= 2, params)


def squared_distance_to_anchor(
    params: PyTree, anchor_params: PyTree, mask: Optional[PyTree] = None
) -> Array:
  """ATSC's L2-to-initialisation penalty.

  L_reg = Σ_{W ∈ Ω} ‖W − W⁰‖²_F, a plain sum over the selected leaves Ω.

  Args:
    params: current parameters θ.
    anchor_params: anchor θ⁰ with the same tree structure as `params`.
    mask: pytree of bools (Python or array) with the same structure; True
      selects a leaf into Ω. Default: every leaf. Use `anchor_mask(params)`
      for ATSC's selection.

  Returns:
    A scalar.
  """
  if mask is None:
    mask = jax.tree.map(lambda _: True, params)

  def leaf_distance(selected, current, anchor):
    distance = jnp.sum(jnp.square(jnp.asarray(current) - anchor))
    return jnp.where(selected, distance, 0.0)

  distances = jax.tree.map(leaf_distance, mask, params, anchor_params)
  return sum(jax.tree.leaves(distances), jnp.zeros(()))
