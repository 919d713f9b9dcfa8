"""Independent float64 NumPy references for jaxkd.losses and the KA, DTD and LS functions.

Written directly from the equations of docs/methods.md (§1-4, §8, §9), one sample at
a time with explicit loops, to give golden values for the JAX code. Terms with
zero target probability are skipped (0·log 0 = 0).
"""

import numpy as np


def log_softmax(row: np.ndarray) -> np.ndarray:
  """log σ(row) for one sample, with the max subtracted before exp."""
  row = np.asarray(row, dtype=np.float64)
  shifted = row - np.max(row)
  return shifted - np.log(np.sum(np.exp(shifted)))


def softmax(row: np.ndarray) -> np.ndarray:
  return np.exp(log_softmax(row))


def kl_divergence(p: np.ndarray, log_p: np.ndarray, log_q: np.ndarray) -> float:
  """KL(p ‖ q) = Σ_c p_c (log p_c − log q_c), skipping classes with p_c = 0."""
  total = 0.0
  for c in range(len(p)):
    if p[c] > 0:
      total += p[c] * (log_p[c] - log_q[c])
  return total


def per_sample(value, batch: int) -> np.ndarray:
  """Broadcasts a scalar / (B,) / (B, 1) value to a float64 (B,) vector."""
  return np.broadcast_to(
      np.asarray(value, dtype=np.float64).reshape(-1), (batch,)
  ).copy()


def cross_entropy(logits, labels, label_smoothing=0.0):
  logits = np.asarray(logits, dtype=np.float64)
  batch, num_classes = logits.shape
  out = np.zeros(batch)
  for i in range(batch):
    log_probs = log_softmax(logits[i])
    for c in range(num_classes):
      target = label_smoothing / num_classes
      if c == labels[i]:
        target += 1.0 - label_smoothing
      out[i] -= target * log_probs[c]
  return out


def softened_kl(teacher_logits, student_logits, temperature,
                teacher_temperature=None, t2_factor=None):
  """f_i · KL(σ(z_t,i/T_t,i) ‖ σ(z_s,i/T_i)), f = T² unless given."""
  teacher_logits = np.asarray(teacher_logits, dtype=np.float64)
  student_logits = np.asarray(student_logits, dtype=np.float64)
  batch = teacher_logits.shape[0]
  t_s = per_sample(temperature, batch)
  t_t = t_s if teacher_temperature is None else per_sample(
      teacher_temperature, batch)
  factor = t_s**2 if t2_factor is None else per_sample(t2_factor, batch)
  out = np.zeros(batch)
  for i in range(batch):
    log_p = log_softmax(teacher_logits[i] / t_t[i])
    log_q = log_softmax(student_logits[i] / t_s[i])
    out[i] = factor[i] * kl_divergence(np.exp(log_p), log_p, log_q)
  return out


def kl_to_target(target_probs, student_logits, temperature, t2_factor=None):
  """f_i · KL(p_i ‖ σ(z_s,i/T_i)) for explicit target probabilities p."""
  target_probs = np.asarray(target_probs, dtype=np.float64)
  student_logits = np.asarray(student_logits, dtype=np.float64)
  batch = target_probs.shape[0]
  t_s = per_sample(temperature, batch)
  factor = t_s**2 if t2_factor is None else per_sample(t2_factor, batch)
  out = np.zeros(batch)
  for i in range(batch):
    p = target_probs[i]
    log_p = np.where(p > 0, np.log(np.where(p > 0, p, 1.0)), 0.0)
    log_q = log_softmax(student_logits[i] / t_s[i])
    out[i] = factor[i] * kl_divergence(p, log_p, log_q)
  return out


def decoupled_kl(teacher_logits, student_logits, labels, temperature,
                 teacher_temperature=None):
  """DKD (§3) in probability space: b = [p_y, 1 − p_y], p̃ = softmax_{c≠y}."""
  teacher_logits = np.asarray(teacher_logits, dtype=np.float64)
  student_logits = np.asarray(student_logits, dtype=np.float64)
  batch, num_classes = teacher_logits.shape
  t_s = per_sample(temperature, batch)
  t_t = t_s if teacher_temperature is None else per_sample(
      teacher_temperature, batch)
  tckd = np.zeros(batch)
  nckd = np.zeros(batch)
  for i in range(batch):
    y = labels[i]
    p_t = softmax(teacher_logits[i] / t_t[i])
    p_s = softmax(student_logits[i] / t_s[i])
    b_t = np.array([p_t[y], 1.0 - p_t[y]])
    b_s = np.array([p_s[y], 1.0 - p_s[y]])
    tckd[i] = t_s[i]**2 * kl_divergence(b_t, _safe_log(b_t), _safe_log(b_s))
    others = [c for c in range(num_classes) if c != y]
    q_t = softmax(teacher_logits[i, others] / t_t[i])
    q_s = softmax(student_logits[i, others] / t_s[i])
    nckd[i] = t_s[i]**2 * kl_divergence(q_t, _safe_log(q_t), _safe_log(q_s))
  return tckd, nckd


def _safe_log(p: np.ndarray) -> np.ndarray:
  with np.errstate(divide="ignore"):
    return np.log(p)


def logit_std(logits, ddof=1):
  logits = np.asarray(logits, dtype=np.float64)
  batch, num_classes = logits.shape
  out = np.zeros(batch)
  for i in range(batch):
    mean = sum(logits[i]) / num_classes
    out[i] = np.sqrt(sum((logits[i] - mean)**2) / (num_classes - ddof))
  return out


def standardize_logits(logits, eps=1e-7, ddof=1):
  logits = np.asarray(logits, dtype=np.float64)
  std = logit_std(logits, ddof)
  return (logits - logits.mean(axis=1, keepdims=True)) / (std[:, None] + eps)


def probability_shift(teacher_logits, labels):
  """Swap the values at argmax and at y, per sample."""
  shifted = np.array(teacher_logits, dtype=np.float64)
  was_wrong = np.zeros(shifted.shape[0], dtype=bool)
  for i in range(shifted.shape[0]):
    k = int(np.argmax(shifted[i]))
    y = int(labels[i])
    if k != y:
      was_wrong[i] = True
      shifted[i, k], shifted[i, y] = shifted[i, y], shifted[i, k]
  return shifted, was_wrong


def label_smoothing_for_wrong_probs(teacher_logits, labels, temperature, rho):
  """KA-LSR target: σ(z/T) if the teacher is right, else smoothed one-hot."""
  teacher_logits = np.asarray(teacher_logits, dtype=np.float64)
  batch, num_classes = teacher_logits.shape
  t = per_sample(temperature, batch)
  out = np.zeros((batch, num_classes))
  for i in range(batch):
    if int(np.argmax(teacher_logits[i])) == int(labels[i]):
      out[i] = softmax(teacher_logits[i] / t[i])
    else:
      out[i] = (1.0 - rho) / (num_classes - 1)
      out[i, labels[i]] = rho
  return out


def dynamic_temperatures(student_logits, teacher_logits, base_temperature,
                         beta, weight_kind, gamma, min_temperature, mask=None):
  """DTD: τ_i = max(τ0 + β(mean_j w_j − w_i), τ_min), FLSW or CWSM weights."""
  student_logits = np.asarray(student_logits, dtype=np.float64)
  teacher_logits = np.asarray(teacher_logits, dtype=np.float64)
  batch = student_logits.shape[0]
  weights = np.zeros(batch)
  for i in range(batch):
    if weight_kind == "flsw":
      v = student_logits[i] / (np.sqrt(np.sum(student_logits[i]**2)) + 1e-4)
      t = teacher_logits[i] / (np.sqrt(np.sum(teacher_logits[i]**2)) + 1e-4)
      weights[i] = (1.0 - np.dot(v, t))**gamma
    else:
      weights[i] = 1.0 / (np.max(softmax(student_logits[i])) + 1e-3)
  selected = [i for i in range(batch) if mask is None or mask[i]]
  mean_weight = sum(weights[i] for i in selected) / len(selected)
  tau = base_temperature + beta * (mean_weight - weights)
  return np.maximum(tau, min_temperature)
