"""LS-KD: z-scored logits (ddof = 1, ε = 1e-7) at base τ = 2, KD weight 9, CE 0.1, against
NumPy; LS with DKD; the per-sample temperature identity; the std and z-score themselves; a
student that learns on digits."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxkd import losses
from jaxkd.methods import lskd
from tests import numpy_reference as ref

F32_TOL = dict(rtol=2e-5, atol=2e-5)


def zscore(logits):
  logits = logits.astype(np.float64)
  centred = logits - logits.mean(1, keepdims=True)
  return centred / (np.std(logits, axis=1, ddof=1, keepdims=True) + 1e-7)


def test_default_loss_is_the_references_flags(make_method, logit_loss_of, fixed_logits):
  """0.1 · CE + 9 · τ² · KL of the z-scored logits at τ = 2 (the reference's flags)."""
  total, metrics = logit_loss_of(make_method("lskd"))
  z_t, z_s = zscore(fixed_logits.teacher), zscore(fixed_logits.student)
  kd = np.mean(ref.softened_kl(z_t, z_s, 2.0))  # Factor τ² = 4 (the base τ).
  ce = np.mean(ref.cross_entropy(fixed_logits.student, fixed_logits.labels))  # Raw logits.
  assert total == pytest.approx(0.1 * ce + 9.0 * kd, rel=1e-5)
  assert metrics["loss/kd"] == pytest.approx(kd, rel=1e-5)


def test_ls_is_a_per_sample_temperature_of_tau_times_std(make_method, logit_loss_of,
                                                         fixed_logits):
  """KD on ẑ at τ equals KD on z at τ·(std + ε) per model, with the factor τ² (§1 item 3)."""
  total, _ = logit_loss_of(make_method("lskd", ce_weight=0.0, kd_weight=1.0))
  teacher, student = fixed_logits.teacher, fixed_logits.student
  t_teacher = 2.0 * (np.std(teacher.astype(np.float64), axis=1, ddof=1) + 1e-7)
  t_student = 2.0 * (np.std(student.astype(np.float64), axis=1, ddof=1) + 1e-7)
  kd = ref.softened_kl(teacher, student, t_student, teacher_temperature=t_teacher, t2_factor=4.0)
  assert total == pytest.approx(np.mean(kd), rel=1e-5)


def test_kd_with_the_ls_transform_is_lskd(make_method, logit_loss_of):
  lskd, _ = logit_loss_of(make_method("lskd"))
  kd, _ = logit_loss_of(make_method("kd", transforms="ls", temperature=2.0, kd_weight=9.0))
  assert kd == lskd


def test_dkd_with_ls_equals_numpy(make_method, logit_loss_of, fixed_logits):
  """DKD+LS as the reference runs it: T = τ = 2, α and β times the KD weight 9."""
  method = make_method("dkd", transforms="ls", temperature=2.0, alpha=9.0, beta=72.0)
  total, _ = logit_loss_of(method, epoch=30)
  z_t, z_s = zscore(fixed_logits.teacher), zscore(fixed_logits.student)
  tckd, nckd = ref.decoupled_kl(z_t, z_s, fixed_logits.labels, 2.0)
  ce = np.mean(ref.cross_entropy(fixed_logits.student, fixed_logits.labels))
  assert total == pytest.approx(ce + 9.0 * tckd.mean() + 72.0 * nckd.mean(), rel=1e-5)


def test_constant_logits_stay_finite(make_method, logit_loss_of, fixed_logits):
  flat = np.zeros_like(fixed_logits.teacher)
  total, _ = logit_loss_of(make_method("lskd"), teacher=flat, student=flat)
  ce = np.log(flat.shape[1])
  assert total == pytest.approx(0.1 * ce, rel=1e-5)


@pytest.mark.parametrize("ddof", [0, 1])
def test_logit_std_and_standardize_match_reference(random_logits, ddof):
  teacher, _, _ = random_logits(0)
  z = jnp.asarray(teacher, jnp.float32)
  np.testing.assert_allclose(lskd.logit_std(z, ddof=ddof), ref.logit_std(teacher, ddof),
                             **F32_TOL)
  np.testing.assert_allclose(lskd.standardize_logits(z, ddof=ddof),
                             ref.standardize_logits(teacher, ddof=ddof), **F32_TOL)


def test_standardize_constant_logits_is_finite():
  logits = jnp.full((2, 10), 3.5)
  np.testing.assert_array_equal(lskd.standardize_logits(logits), np.zeros((2, 10)))
  grad = jax.grad(lambda z: jnp.sum(lskd.standardize_logits(z) ** 2))(logits)
  assert bool(jnp.all(jnp.isfinite(grad)))


def test_standardisation_is_per_sample_temperature(x64, random_logits):
  """σ(ẑ/τ) = σ(z/(τ·(std+eps))): LS-KD equals KD with temperature τ·std."""
  teacher, student, _ = random_logits(1)
  tau, eps = 2.0, 1e-7
  standardized = lskd.standardize_logits(teacher, eps=eps)
  temperature = tau * (ref.logit_std(teacher) + eps)
  np.testing.assert_allclose(np.stack([ref.softmax(row / tau) for row in np.asarray(standardized)]),
                             np.stack([ref.softmax(row) for row in teacher / temperature[:, None]]),
                             rtol=1e-13, atol=1e-15)
  ls_kd = losses.softened_kl(lskd.standardize_logits(teacher), lskd.standardize_logits(student),
                             tau)
  per_sample = losses.softened_kl(
      teacher, student, tau * (lskd.logit_std(student) + eps),
      teacher_temperature=tau * (lskd.logit_std(teacher) + eps), t2_factor=tau**2)
  np.testing.assert_allclose(ls_kd, per_sample, rtol=1e-12)


@pytest.mark.slow
def test_student_learns_and_only_the_student_moves(distill_on_digits, initial_and_final_state,
                                                   assert_only_student_side_moved):
  config, summary, workdir = distill_on_digits("lskd")
  assert summary["final_test_accuracy"] > 0.7, summary["final_test_accuracy"]
  assert_only_student_side_moved(*initial_and_final_state(config, workdir))
