"""DKD: the loss with its warm-up against a NumPy reference written the way mdistiller
computes it (probabilities, the target masked by −1000), and a student that learns."""

import numpy as np
import pytest

from tests import numpy_reference as ref


def softmax(logits):
  shifted = np.exp(logits - logits.max(-1, keepdims=True))
  return shifted / shifted.sum(-1, keepdims=True)


def dkd_terms_reference(teacher, student, labels, temperature):
  """Per-sample T²·TCKD and T²·NCKD from probabilities, float64 (docs/methods.md §3)."""
  teacher, student = teacher.astype(np.float64), student.astype(np.float64)
  rows = np.arange(len(labels))
  target = np.zeros_like(teacher)
  target[rows, labels] = 1.0
  p_t, p_s = softmax(teacher / temperature), softmax(student / temperature)
  b_t = np.stack([p_t[rows, labels], 1 - p_t[rows, labels]], 1)
  b_s = np.stack([p_s[rows, labels], 1 - p_s[rows, labels]], 1)
  tckd = np.sum(b_t * (np.log(b_t) - np.log(b_s)), 1)
  q_t = softmax(teacher / temperature - 1000.0 * target)
  q_s = softmax(student / temperature - 1000.0 * target)
  with np.errstate(divide="ignore", invalid="ignore"):  # q = 0 at the target: masked.
    nckd = np.sum(np.where(target > 0, 0.0, q_t * (np.log(q_t) - np.log(q_s))), 1)
  return temperature**2 * tckd, temperature**2 * nckd


@pytest.mark.parametrize("epoch, warmup", [(1, 1 / 20), (5, 5 / 20), (20, 1.0), (57, 1.0)])
def test_default_loss_with_warmup_is_mdistillers_cifar_recipe(make_method, logit_loss_of,
                                                              fixed_logits, epoch, warmup):
  """CE + min(epoch / 20, 1) · (1 · TCKD + 8 · NCKD) at T = 4, the defaults, against NumPy."""
  total, metrics = logit_loss_of(make_method("dkd"), epoch=epoch)
  tckd, nckd = dkd_terms_reference(fixed_logits.teacher, fixed_logits.student,
                                   fixed_logits.labels, 4.0)
  ce = np.mean(ref.cross_entropy(fixed_logits.student, fixed_logits.labels))
  assert total == pytest.approx(ce + warmup * (tckd.mean() + 8.0 * nckd.mean()), rel=1e-5)
  assert metrics["dkd/warmup"] == pytest.approx(warmup)
  assert metrics["loss/tckd"] == pytest.approx(tckd.mean(), rel=1e-5)
  assert metrics["loss/nckd"] == pytest.approx(nckd.mean(), rel=1e-5)


def test_tckd_plus_weighted_nckd_is_kd(make_method, logit_loss_of, fixed_logits):
  """KL(p_t‖p_s) = TCKD + (1 − p_t[y])·NCKD per sample (docs/methods.md §1, item 1)."""
  method = make_method("dkd", alpha=1.0, beta=1.0, ce_weight=0.0, warmup_epochs=1)
  teacher, student, labels = fixed_logits.teacher, fixed_logits.student, fixed_logits.labels
  tckd, nckd = dkd_terms_reference(teacher, student, labels, 4.0)
  rest = 1 - softmax(teacher.astype(np.float64) / 4.0)[np.arange(len(labels)), labels]
  kd = ref.softened_kl(teacher, student, 4.0)
  np.testing.assert_allclose(tckd + rest * nckd, kd, rtol=1e-9)
  total, _ = logit_loss_of(method)
  assert total == pytest.approx(tckd.mean() + nckd.mean(), rel=1e-5)


def test_extreme_logits_stay_finite(make_method, logit_loss_of, fixed_logits):
  total, metrics = logit_loss_of(make_method("dkd"), teacher=fixed_logits.teacher * 1e4,
                                 student=fixed_logits.student * 1e4)
  assert np.isfinite(total) and np.isfinite(metrics["loss/nckd"]) and total > 0


@pytest.mark.slow
def test_student_learns_and_only_the_student_moves(distill_on_digits, initial_and_final_state,
                                                   assert_only_student_side_moved):
  config, summary, workdir = distill_on_digits("dkd", warmup_epochs=1)
  assert summary["final_test_accuracy"] > 0.7, summary["final_test_accuracy"]
  assert_only_student_side_moved(*initial_and_final_state(config, workdir))
