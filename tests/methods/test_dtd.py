"""Dynamic Temperature Distillation: per-sample temperatures (FLSW, CWSM) and the loss
against NumPy, the clamp, the padding mask, the global-batch mean under sharding, and a
student that learns."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec

from jaxkd import step as step_lib
from jaxkd.methods import base, dtd
from tests import numpy_reference as ref

F32_TOL = dict(rtol=2e-5, atol=2e-5)
DTD_SETTINGS = dict(base_temperature=4.0, beta=1.5, gamma=2.0, min_temperature=1.0)


def softmax(logits):
  shifted = np.exp(logits - logits.max(-1, keepdims=True))
  return shifted / shifted.sum(-1, keepdims=True)


def confusion(student, teacher, kind, gamma):
  """FLSW (1 − cos)^γ with 1e-4 added to the norms, or CWSM 1 / (max σ(z_s) + 1e-3)."""
  student, teacher = student.astype(np.float64), teacher.astype(np.float64)
  if kind == "flsw":
    v = student / (np.linalg.norm(student, axis=1, keepdims=True) + 1e-4)
    t = teacher / (np.linalg.norm(teacher, axis=1, keepdims=True) + 1e-4)
    return (1 - np.sum(v * t, 1))**gamma
  return 1 / (softmax(student).max(1) + 1e-3)


def temperatures(student, teacher, kind, beta, gamma=2.0, tau0=4.0, tau_min=1.0):
  w = confusion(student, teacher, kind, gamma)
  return np.maximum(tau0 + beta * (w.mean() - w), tau_min)


def dtd_loss(teacher, student, labels, tau, t2=True, weights=None):
  """0.1 · CE + 0.9 · mean_i f_i · KL(σ(z_t/τ_i) ‖ σ(z_s/τ_i)), f = τ_i² or 1."""
  teacher, student = teacher.astype(np.float64), student.astype(np.float64)
  p_t, p_s = softmax(teacher / tau[:, None]), softmax(student / tau[:, None])
  kl = np.sum(p_t * (np.log(p_t) - np.log(p_s)), 1) * (tau**2 if t2 else 1.0)
  kl = kl if weights is None else kl * weights
  return 0.1 * np.mean(ref.cross_entropy(student, labels)) + 0.9 * kl.mean()


def test_default_loss(make_method, logit_loss_of, fixed_logits):
  """By default: FLSW with β = 1, γ = 2, τ₀ = 4, τ ≥ 1, each sample's KL times τ_i², no
  sample weights, 0.1 · CE + 0.9 · KD."""
  total, _ = logit_loss_of(make_method("dtd"))
  teacher, student, labels = fixed_logits.teacher, fixed_logits.student, fixed_logits.labels
  tau = temperatures(student, teacher, "flsw", beta=1.0, gamma=2.0, tau0=4.0, tau_min=1.0)
  assert total == pytest.approx(dtd_loss(teacher, student, labels, tau, t2=True), rel=1e-5)


@pytest.mark.parametrize("kind, beta", [("flsw", 2.0), ("cwsm", 1.0)])
@pytest.mark.parametrize("t2", [True, False])
def test_loss_and_temperatures_equal_numpy(make_method, logit_loss_of, fixed_logits, kind,
                                           beta, t2):
  method = make_method("dtd", dtd_weight=kind, dtd_beta=beta, dtd_t2=t2)
  total, metrics = logit_loss_of(method)
  teacher, student, labels = fixed_logits.teacher, fixed_logits.student, fixed_logits.labels
  tau = temperatures(student, teacher, kind, beta)
  assert tau.min() < 4.0 < tau.max()
  assert total == pytest.approx(dtd_loss(teacher, student, labels, tau, t2), rel=1e-5)
  assert metrics["dtd/temperature_mean"] == pytest.approx(tau.mean(), rel=1e-5)
  assert metrics["dtd/temperature_min"] == pytest.approx(tau.min(), rel=1e-5)
  assert metrics["dtd/temperature_max"] == pytest.approx(tau.max(), rel=1e-5)


def test_temperature_is_clamped(make_method, logit_loss_of, fixed_logits):
  method = make_method("dtd", dtd_weight="cwsm", dtd_beta=50.0, dtd_min_temperature=0.5)
  total, metrics = logit_loss_of(method)
  tau = temperatures(fixed_logits.student, fixed_logits.teacher, "cwsm", 50.0, tau_min=0.5)
  assert metrics["dtd/temperature_min"] == 0.5 and np.sum(tau == 0.5) > 1
  assert total == pytest.approx(dtd_loss(fixed_logits.teacher, fixed_logits.student,
                                         fixed_logits.labels, tau), rel=1e-5)


def test_sample_weighting_option(make_method, logit_loss_of, fixed_logits):
  total, _ = logit_loss_of(make_method("dtd", dtd_sample_weight=True))
  w = confusion(fixed_logits.student, fixed_logits.teacher, "flsw", 2.0)
  tau = temperatures(fixed_logits.student, fixed_logits.teacher, "flsw", 1.0)
  assert total == pytest.approx(dtd_loss(fixed_logits.teacher, fixed_logits.student,
                                         fixed_logits.labels, tau, weights=w / w.mean()),
                                rel=1e-5)


def test_batch_mean_is_global_when_the_batch_is_sharded(make_method):
  """Under jit, with 16 samples sharded over 8 devices, τ uses the mean over all 16."""
  rng = np.random.default_rng(3)
  teacher, student = rng.normal(0, 3, (2, 16, 10)).astype(np.float32)
  labels = rng.integers(0, 10, 16).astype(np.int32)
  method = make_method("dtd")
  mesh = step_lib.create_mesh()
  assert mesh.size == 8
  sharded = NamedSharding(mesh, PartitionSpec(step_lib.DATA_AXIS))
  step = base.StepInfo(step=jnp.asarray(0), epoch=jnp.asarray(1))
  loss = jax.jit(lambda t, s, y: method.logit_loss(t, s, y, step, None))
  total, metrics = loss(*(jax.device_put(x, sharded) for x in (teacher, student, labels)))
  tau = temperatures(student, teacher, "flsw", 1.0)
  assert float(total) == pytest.approx(dtd_loss(teacher, student, labels, tau), rel=1e-5)
  assert float(metrics["dtd/temperature_mean"]) == pytest.approx(tau.mean(), rel=1e-5)


@pytest.mark.parametrize("weight_kind", ["flsw", "cwsm"])
def test_sample_temperatures_match_reference(random_logits, weight_kind):
  teacher, student, _ = random_logits(7)
  got = dtd.sample_temperatures(jnp.asarray(student, jnp.float32),
                                jnp.asarray(teacher, jnp.float32), weight_kind=weight_kind,
                                **DTD_SETTINGS)
  expected = ref.dynamic_temperatures(student, teacher, weight_kind=weight_kind, **DTD_SETTINGS)
  assert got.shape == (8,)
  assert np.ptp(expected) > 0.1
  np.testing.assert_allclose(got, expected, **F32_TOL)


@pytest.mark.parametrize("weight_kind", ["flsw", "cwsm"])
def test_sample_temperatures_are_clamped(random_logits, weight_kind):
  teacher, student, _ = random_logits(8)
  settings = dict(base_temperature=2.0, beta=50.0, gamma=1.0, min_temperature=0.5)
  got = dtd.sample_temperatures(student, teacher, weight_kind=weight_kind, **settings)
  expected = ref.dynamic_temperatures(student, teacher, weight_kind=weight_kind, **settings)
  clamped = expected == 0.5
  assert clamped.any() and not clamped.all()
  assert float(jnp.min(got)) == 0.5
  np.testing.assert_allclose(got, expected, rtol=1e-4)


@pytest.mark.parametrize("weight_kind", ["flsw", "cwsm"])
def test_sample_temperatures_mask_excludes_padding(random_logits, weight_kind):
  teacher, student, _ = random_logits(9)
  padded_student = np.concatenate([student, np.full((3, 10), 40.0)])
  padded_student[8:, 0] = -40.0
  padded_teacher = np.concatenate([teacher, -np.ones((3, 10))])
  mask = np.arange(8 + 3) < 8
  got = dtd.sample_temperatures(padded_student, padded_teacher, weight_kind=weight_kind,
                                mask=mask, **DTD_SETTINGS)
  expected = ref.dynamic_temperatures(student, teacher, weight_kind=weight_kind, **DTD_SETTINGS)
  np.testing.assert_allclose(got[:8], expected, **F32_TOL)
  unmasked = dtd.sample_temperatures(padded_student, padded_teacher, weight_kind=weight_kind,
                                     **DTD_SETTINGS)
  assert not np.allclose(unmasked[:8], expected, **F32_TOL)


def test_sample_temperatures_have_no_gradient(random_logits):
  teacher, student, _ = random_logits(10)
  grads = jax.grad(
      lambda s, t: dtd.sample_temperatures(s, t, weight_kind="flsw", **DTD_SETTINGS).sum(),
      argnums=(0, 1))(jnp.asarray(student, jnp.float32), jnp.asarray(teacher, jnp.float32))
  for grad in grads:
    np.testing.assert_array_equal(grad, 0.0)


def test_sample_temperatures_use_the_global_batch_under_sharding(random_logits):
  mesh = step_lib.create_mesh()
  teacher, student, _ = random_logits(11, batch=2 * mesh.size)
  sharding = NamedSharding(mesh, PartitionSpec(step_lib.DATA_AXIS))
  compute = jax.jit(lambda s, t: dtd.sample_temperatures(s, t, weight_kind="cwsm",
                                                         **DTD_SETTINGS))
  sharded = compute(jax.device_put(jnp.asarray(student, jnp.float32), sharding),
                    jax.device_put(jnp.asarray(teacher, jnp.float32), sharding))
  expected = ref.dynamic_temperatures(student, teacher, weight_kind="cwsm", **DTD_SETTINGS)
  np.testing.assert_allclose(sharded, expected, **F32_TOL)


def test_unknown_weight_kind_raises(random_logits):
  teacher, student, _ = random_logits(12)
  with pytest.raises(ValueError, match="unknown DTD weight kind 'focal'; valid: flsw, cwsm"):
    dtd.sample_temperatures(student, teacher, weight_kind="focal", **DTD_SETTINGS)


@pytest.mark.slow
def test_student_learns_and_only_the_student_moves(distill_on_digits, initial_and_final_state,
                                                   assert_only_student_side_moved):
  config, summary, workdir = distill_on_digits("dtd")
  assert summary["final_test_accuracy"] > 0.7, summary["final_test_accuracy"]
  assert_only_student_side_moved(*initial_and_final_state(config, workdir))
