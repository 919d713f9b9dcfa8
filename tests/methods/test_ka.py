"""Knowledge Adjustment: probability shift and label smoothing against NumPy, the adjusted
fraction, and a student that learns on digits with the teacher untouched."""

import numpy as np
import pytest

from tests import numpy_reference as ref


def kd_part(target_probs, student, temperature=4.0):
  """T² · mean_i KL(p_i ‖ σ(z_s,i / T)), float64."""
  return np.mean(ref.kl_to_target(target_probs, student, temperature))


def ce_part(fixed_logits):
  return np.mean(ref.cross_entropy(fixed_logits.student, fixed_logits.labels))


def test_ka_is_kd_with_the_ka_transform(make_method):
  hp = make_method("ka").hparams
  assert (hp.transforms, hp.ka_variant, hp.ka_rho) == ("ka", "ps", 0.9)
  assert (hp.temperature, hp.ce_weight, hp.kd_weight) == (4.0, 0.1, 0.9)


def test_probability_shift_equals_numpy(make_method, logit_loss_of, fixed_logits):
  total, metrics = logit_loss_of(make_method("ka"))
  teacher, labels = fixed_logits.teacher.astype(np.float64), fixed_logits.labels
  shifted = teacher.copy()
  rows = np.arange(len(labels))
  top = teacher.argmax(1)
  shifted[rows, top], shifted[rows, labels] = teacher[rows, labels], teacher[rows, top]
  probs = np.stack([ref.softmax(row / 4.0) for row in shifted])
  assert total == pytest.approx(0.1 * ce_part(fixed_logits) + 0.9 * kd_part(
      probs, fixed_logits.student), rel=1e-5)
  wrong = np.mean(top != labels)
  assert 0 < wrong < 1
  assert metrics["ka/adjusted_fraction"] == pytest.approx(wrong)


def test_probability_shift_is_kd_when_the_teacher_is_right(make_method, logit_loss_of,
                                                           fixed_logits):
  right = fixed_logits.teacher.copy()
  right[np.arange(len(right)), fixed_logits.labels] += 100.0
  ka_total, metrics = logit_loss_of(make_method("ka"), teacher=right)
  kd_total, _ = logit_loss_of(make_method("kd"), teacher=right)
  assert ka_total == kd_total and metrics["ka/adjusted_fraction"] == 0.0


@pytest.mark.parametrize("rho", [0.9, 0.75])
def test_label_smoothing_equals_numpy(make_method, logit_loss_of, fixed_logits, rho):
  total, metrics = logit_loss_of(make_method("ka", ka_variant="lsr", ka_rho=rho))
  teacher, labels = fixed_logits.teacher.astype(np.float64), fixed_logits.labels
  classes = teacher.shape[1]
  probs = np.stack([ref.softmax(row / 4.0) for row in teacher])
  for i in np.flatnonzero(teacher.argmax(1) != labels):
    probs[i] = (1 - rho) / (classes - 1)
    probs[i, labels[i]] = rho
  assert total == pytest.approx(0.1 * ce_part(fixed_logits) + 0.9 * kd_part(
      probs, fixed_logits.student), rel=1e-5)
  assert metrics["ka/adjusted_fraction"] == pytest.approx(np.mean(teacher.argmax(1) != labels))


@pytest.mark.parametrize("settings, message", [
    ({"ka_variant": "swap"}, "ka_variant must be 'ps' or 'lsr'"),
    ({"ka_variant": "lsr", "transforms": "ka,dtd"}, "must be the last transform"),
])
def test_bad_settings_are_named(make_method, settings, message):
  with pytest.raises(ValueError, match=message):
    make_method("ka", **settings)


@pytest.mark.slow
def test_student_learns_and_only_the_student_moves(distill_on_digits, initial_and_final_state,
                                                   assert_only_student_side_moved):
  config, summary, workdir = distill_on_digits("ka")
  assert summary["final_test_accuracy"] > 0.7, summary["final_test_accuracy"]
  assert_only_student_side_moved(*initial_and_final_state(config, workdir))
