"""Vanilla KD: the loss against NumPy (T², sum over classes, mean over the batch), its
gradient, and a distilled student that learns on digits with the teacher untouched."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxkd.methods import base
from tests import numpy_reference as ref

STEP = base.StepInfo(step=jnp.asarray(0), epoch=jnp.asarray(1))


def softmax(logits):
  shifted = np.exp(logits - logits.max(-1, keepdims=True))
  return shifted / shifted.sum(-1, keepdims=True)


def kd_reference(teacher, student, labels, temperature, ce_weight, kd_weight):
  """w_ce · mean CE + w_kd · T² · mean_i Σ_c p_t (log p_t − log p_s), in float64."""
  teacher, student = teacher.astype(np.float64), student.astype(np.float64)
  p_t, p_s = softmax(teacher / temperature), softmax(student / temperature)
  kl = np.sum(p_t * (np.log(p_t) - np.log(p_s)), axis=1)
  ce = -np.log(softmax(student)[np.arange(len(labels)), labels])
  return ce_weight * ce.mean() + kd_weight * temperature**2 * kl.mean(), temperature**2 * kl.mean()


def test_default_loss_is_mdistillers_cifar_recipe(make_method, logit_loss_of, fixed_logits):
  """What `--config.method=kd` trains with by default: 0.1 · CE + 0.9 · 4² · KL at T = 4."""
  total, _ = logit_loss_of(make_method("kd"))
  expected, _ = kd_reference(fixed_logits.teacher, fixed_logits.student, fixed_logits.labels,
                             4.0, 0.1, 0.9)
  assert total == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("settings", [{}, {"temperature": 2.0, "ce_weight": 1.0, "kd_weight": 1.0}])
def test_loss_equals_numpy(make_method, logit_loss_of, fixed_logits, settings):
  method = make_method("kd", **settings)
  hp = method.hparams
  total, metrics = logit_loss_of(method)
  expected, kd = kd_reference(fixed_logits.teacher, fixed_logits.student, fixed_logits.labels,
                              hp.temperature, hp.ce_weight, hp.kd_weight)
  assert total == pytest.approx(expected, rel=1e-5)
  assert metrics["loss/kd"] == pytest.approx(kd, rel=1e-5)
  assert metrics["loss/ce"] == pytest.approx(np.mean(ref.cross_entropy(
      fixed_logits.student, fixed_logits.labels)), rel=1e-5)


def test_gradient_is_t_times_probability_gap_and_none_reaches_the_teacher(make_method,
                                                                         fixed_logits):
  """d/dz_s of w_kd · T² · mean KL = w_kd · T · (σ(z_s/T) − σ(z_t/T)) / B (CE weight 0)."""
  method = make_method("kd", ce_weight=0.0)
  labels = jnp.asarray(fixed_logits.labels)

  def total(teacher, student):
    return method.logit_loss(teacher, student, labels, STEP, None)[0]

  grad_t, grad_s = jax.grad(total, argnums=(0, 1))(jnp.asarray(fixed_logits.teacher),
                                                    jnp.asarray(fixed_logits.student))
  t = 4.0
  expected = 0.9 * t * (softmax(fixed_logits.student / t) - softmax(fixed_logits.teacher / t))
  np.testing.assert_allclose(grad_s, expected / len(labels), rtol=1e-4, atol=1e-7)
  np.testing.assert_array_equal(grad_t, 0.0)


@pytest.mark.slow
def test_student_learns_and_only_the_student_moves(distill_on_digits, initial_and_final_state,
                                                   assert_only_student_side_moved):
  config, summary, workdir = distill_on_digits("kd")
  assert summary["teacher_test_accuracy"][0] > 0.9
  assert summary["final_test_accuracy"] > 0.7, summary["final_test_accuracy"]
  assert_only_student_side_moved(*initial_and_final_state(config, workdir))
