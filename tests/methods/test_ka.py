"""Knowledge Adjustment: probability shift and label smoothing against NumPy (the loss and
the functions themselves), the adjusted fraction, and a student that learns on digits with
the teacher untouched."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxkd import losses
from jaxkd.methods import ka
from tests import numpy_reference as ref

F32_TOL = dict(rtol=2e-5, atol=2e-5)


def softmax_rows(logits, temperature=1.0):
  return np.stack([ref.softmax(row / temperature) for row in logits])


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


def test_probability_shift_function_matches_reference(random_logits):
  teacher, _, labels = random_logits(2)
  shifted, was_wrong = ka.probability_shift(jnp.asarray(teacher, jnp.float32), labels)
  ref_shifted, ref_wrong = ref.probability_shift(teacher, labels)
  assert ref_wrong.any() and not ref_wrong.all()
  np.testing.assert_array_equal(was_wrong, ref_wrong)
  np.testing.assert_allclose(shifted, ref_shifted, **F32_TOL)
  np.testing.assert_array_equal(np.argmax(shifted, axis=1), labels)


def test_probability_shift_is_noop_for_correct_teacher(random_logits):
  teacher, _, _ = random_logits(3)
  labels = np.argmax(teacher, axis=1)
  z = jnp.asarray(teacher, jnp.float32)
  shifted, was_wrong = ka.probability_shift(z, labels)
  np.testing.assert_array_equal(shifted, z)
  assert not bool(was_wrong.any())


def test_probability_shift_is_permutation_equivariant(x64, random_logits):
  """Shifting logits then softmax(·/T) equals shifting the probabilities."""
  teacher, _, labels = random_logits(4)
  temperature = 4.0
  shifted, _ = ka.probability_shift(teacher, labels)
  probs_of_shifted = softmax_rows(np.asarray(shifted), temperature)
  shifted_probs, _ = ref.probability_shift(softmax_rows(teacher, temperature), labels)
  np.testing.assert_allclose(probs_of_shifted, shifted_probs, rtol=1e-14, atol=1e-16)


@pytest.mark.parametrize("temperature", [4.0, np.linspace(1.0, 4.0, 8)])
def test_label_smoothing_for_wrong_matches_reference(random_logits, temperature):
  teacher, student, labels = random_logits(5)
  rho = 0.9
  log_probs, was_wrong = ka.label_smoothing_for_wrong(
      jnp.asarray(teacher, jnp.float32), labels, jnp.asarray(temperature, jnp.float32), rho)
  expected = ref.label_smoothing_for_wrong_probs(teacher, labels, temperature, rho)
  np.testing.assert_allclose(jnp.exp(log_probs), expected, **F32_TOL)
  np.testing.assert_array_equal(was_wrong, np.argmax(teacher, axis=1) != labels)
  got = losses.kl_to_target(log_probs, jnp.asarray(student, jnp.float32), temperature)
  np.testing.assert_allclose(got, ref.kl_to_target(expected, student, temperature),
                             rtol=1e-4, atol=1e-4)


def test_label_smoothing_rho_one_gives_finite_loss(random_logits):
  teacher, student, labels = random_logits(6)
  log_probs, was_wrong = ka.label_smoothing_for_wrong(teacher, labels, 4.0, 1.0)
  assert bool(was_wrong.any())
  loss, grad = jax.value_and_grad(lambda s: losses.kl_to_target(log_probs, s, 4.0).mean())(
      jnp.asarray(student, jnp.float32))
  expected = ref.kl_to_target(
      ref.label_smoothing_for_wrong_probs(teacher, labels, 4.0, 1.0), student, 4.0).mean()
  assert loss == pytest.approx(expected, rel=1e-4)
  assert bool(jnp.all(jnp.isfinite(grad)))


@pytest.mark.slow
def test_student_learns_and_only_the_student_moves(distill_on_digits, initial_and_final_state,
                                                   assert_only_student_side_moved):
  config, summary, workdir = distill_on_digits("ka")
  assert summary["final_test_accuracy"] > 0.7, summary["final_test_accuracy"]
  assert_only_student_side_moved(*initial_and_final_state(config, workdir))
