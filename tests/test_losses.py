"""Golden-value, identity and gradient tests for jaxkd.losses."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from jaxkd import losses
from tests import numpy_reference as ref

BATCH, CLASSES = 6, 10
F32_TOL = dict(rtol=2e-5, atol=2e-5)


def random_problem(seed, batch=BATCH, classes=CLASSES, scale=3.0):
  rng = np.random.default_rng(seed)
  teacher = scale * rng.standard_normal((batch, classes))
  student = scale * rng.standard_normal((batch, classes))
  labels = rng.integers(0, classes, size=batch)
  return teacher, student, labels


def extreme_logits(seed, magnitude, batch=BATCH, classes=CLASSES):
  """Logits of ±magnitude (random signs) with one dominant class per row."""
  rng = np.random.default_rng(seed)
  logits = magnitude * rng.choice([-1.0, 1.0], size=(batch, classes))
  logits *= rng.uniform(0.5, 1.0, size=(batch, classes))
  logits[np.arange(batch), rng.integers(0, classes, size=batch)] = magnitude
  return logits


# --- batch_mean ---------------------------------------------------------------


def test_batch_mean_is_the_mean_or_the_mean_over_selected_samples():
  values = jnp.array([1.0, 2.0, 3.0, 10.0])
  assert losses.batch_mean(values) == pytest.approx(4.0)
  assert losses.batch_mean(values, jnp.array([True, True, True, False])) == (
      pytest.approx(2.0)
  )
  assert losses.batch_mean(values, jnp.zeros(4, bool)) == 0.0


# --- cross_entropy ------------------------------------------------------------


@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
def test_cross_entropy_matches_reference(label_smoothing):
  _, student, labels = random_problem(0)
  got = losses.cross_entropy(
      jnp.asarray(student, jnp.float32), labels, label_smoothing=label_smoothing
  )
  assert got.shape == (BATCH,)
  np.testing.assert_allclose(
      got, ref.cross_entropy(student, labels, label_smoothing), **F32_TOL
  )


# --- softened_kl / kl_to_target -----------------------------------------------


@pytest.mark.parametrize(
    "temperature",
    [4.0, np.linspace(1.0, 5.0, BATCH), np.linspace(1.0, 5.0, BATCH)[:, None]],
    ids=["scalar", "per_sample", "column"],
)
def test_softened_kl_matches_reference(temperature):
  teacher, student, _ = random_problem(1)
  got = losses.softened_kl(
      jnp.asarray(teacher, jnp.float32),
      jnp.asarray(student, jnp.float32),
      jnp.asarray(temperature, jnp.float32),
  )
  assert got.shape == (BATCH,)
  np.testing.assert_allclose(
      got, ref.softened_kl(teacher, student, temperature), **F32_TOL
  )


def test_softened_kl_separate_teacher_temperature_and_t2_factor():
  teacher, student, _ = random_problem(2)
  teacher_temperature = np.linspace(0.5, 3.0, BATCH)
  got = losses.softened_kl(
      jnp.asarray(teacher, jnp.float32),
      jnp.asarray(student, jnp.float32),
      3.0,
      teacher_temperature=jnp.asarray(teacher_temperature, jnp.float32),
      t2_factor=4.0,
  )
  expected = ref.softened_kl(
      teacher, student, 3.0, teacher_temperature=teacher_temperature,
      t2_factor=4.0,
  )
  np.testing.assert_allclose(got, expected, **F32_TOL)


def test_softened_kl_is_zero_for_identical_logits():
  teacher, _, _ = random_problem(3)
  got = losses.softened_kl(teacher, teacher, 4.0)
  np.testing.assert_allclose(got, np.zeros(BATCH), atol=1e-5)


def test_kl_to_target_matches_reference_with_zero_mass_classes():
  rng = np.random.default_rng(4)
  _, student, _ = random_problem(4)
  target = rng.uniform(size=(BATCH, CLASSES))
  target[:, :3] = 0.0
  target /= target.sum(axis=1, keepdims=True)
  with np.errstate(divide="ignore"):
    target_log_probs = np.log(target)
  got = losses.kl_to_target(
      jnp.asarray(target_log_probs, jnp.float32),
      jnp.asarray(student, jnp.float32),
      2.0,
      t2_factor=jnp.full((BATCH,), 3.0),
  )
  np.testing.assert_allclose(
      got, ref.kl_to_target(target, student, 2.0, t2_factor=3.0), **F32_TOL
  )
  grad = jax.grad(
      lambda t, s: losses.kl_to_target(t, s, 2.0).sum(), argnums=(0, 1)
  )(jnp.asarray(target_log_probs, jnp.float32),
    jnp.asarray(student, jnp.float32))
  assert all(bool(jnp.all(jnp.isfinite(g))) for g in grad)


# --- decoupled_kl -------------------------------------------------------------


def test_decoupled_kl_matches_reference():
  teacher, student, labels = random_problem(5)
  tckd, nckd = losses.decoupled_kl(
      jnp.asarray(teacher, jnp.float32), jnp.asarray(student, jnp.float32),
      labels, 4.0,
  )
  ref_tckd, ref_nckd = ref.decoupled_kl(teacher, student, labels, 4.0)
  assert tckd.shape == nckd.shape == (BATCH,)
  np.testing.assert_allclose(tckd, ref_tckd, **F32_TOL)
  np.testing.assert_allclose(nckd, ref_nckd, **F32_TOL)


def test_decoupled_kl_per_sample_teacher_and_student_temperatures():
  teacher, student, labels = random_problem(6)
  student_temperature = 2.0 * ref.logit_std(student)
  teacher_temperature = 2.0 * ref.logit_std(teacher)
  tckd, nckd = losses.decoupled_kl(
      jnp.asarray(teacher, jnp.float32), jnp.asarray(student, jnp.float32),
      labels, jnp.asarray(student_temperature, jnp.float32),
      teacher_temperature=jnp.asarray(teacher_temperature[:, None],
                                      jnp.float32),
  )
  ref_tckd, ref_nckd = ref.decoupled_kl(
      teacher, student, labels, student_temperature, teacher_temperature
  )
  np.testing.assert_allclose(tckd, ref_tckd, **F32_TOL)
  np.testing.assert_allclose(nckd, ref_nckd, **F32_TOL)
  tckd_t2, nckd_t2 = losses.decoupled_kl(
      teacher, student, labels, student_temperature,
      teacher_temperature=teacher_temperature, t2_factor=4.0,
  )
  np.testing.assert_allclose(tckd_t2, 4.0 * ref_tckd / student_temperature**2,
                             **F32_TOL)
  np.testing.assert_allclose(nckd_t2, 4.0 * ref_nckd / student_temperature**2,
                             **F32_TOL)


def test_decoupled_kl_two_classes():
  teacher, student, labels = random_problem(7, classes=2)
  tckd, nckd = losses.decoupled_kl(teacher, student, labels, 4.0)
  np.testing.assert_array_equal(nckd, np.zeros(BATCH))
  np.testing.assert_allclose(tckd, ref.softened_kl(teacher, student, 4.0),
                             **F32_TOL)
  np.testing.assert_allclose(
      tckd, ref.decoupled_kl(teacher, student, labels, 4.0)[0], **F32_TOL
  )


def p_target(teacher, labels, temperature):
  probs = np.stack([ref.softmax(row / temperature) for row in teacher])
  return probs[np.arange(len(labels)), labels]


@pytest.mark.parametrize("temperature", [1.0, 4.0])
def test_dkd_decomposition_identity(x64, temperature):
  """KL(p_t ‖ p_s) = TCKD + (1 − p_t[y])·NCKD, each side carrying T²."""
  teacher, student, labels = random_problem(8)
  kl = losses.softened_kl(teacher, student, temperature)
  tckd, nckd = losses.decoupled_kl(teacher, student, labels, temperature)
  weight = 1.0 - p_target(teacher, labels, temperature)
  np.testing.assert_allclose(kl, tckd + weight * nckd, rtol=1e-12, atol=1e-12)


# --- extreme logits -----------------------------------------------------------


@pytest.mark.parametrize("magnitude", [1e3, 1e4])
def test_extreme_teacher_matches_reference(magnitude):
  teacher = extreme_logits(9, magnitude)
  _, student, labels = random_problem(9)
  teacher32 = jnp.asarray(teacher, jnp.float32)
  student32 = jnp.asarray(student, jnp.float32)
  kl = losses.softened_kl(teacher32, student32, 4.0)
  tckd, nckd = losses.decoupled_kl(teacher32, student32, labels, 4.0)
  np.testing.assert_allclose(kl, ref.softened_kl(teacher, student, 4.0),
                             rtol=1e-4, atol=1e-4)
  ref_tckd, ref_nckd = ref.decoupled_kl(teacher, student, labels, 4.0)
  np.testing.assert_allclose(tckd, ref_tckd, rtol=1e-4, atol=1e-4)
  np.testing.assert_allclose(nckd, ref_nckd, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("magnitude", [1e3, 1e4])
def test_extreme_student_is_finite_and_decomposes(x64, magnitude):
  """A confidently wrong student: huge but finite losses and gradients."""
  _, teacher, labels = random_problem(10)
  student = extreme_logits(10, magnitude)
  kl = losses.softened_kl(teacher, student, 4.0)
  tckd, nckd = losses.decoupled_kl(teacher, student, labels, 4.0)
  np.testing.assert_allclose(kl, ref.softened_kl(teacher, student, 4.0),
                             rtol=1e-10)
  weight = 1.0 - p_target(teacher, labels, 4.0)
  np.testing.assert_allclose(kl, tckd + weight * nckd, rtol=1e-10)
  assert np.all(np.asarray(tckd) > 0) and np.all(np.asarray(nckd) > 0)


@pytest.mark.parametrize("magnitude", [1e3, 1e4])
def test_extreme_logits_give_finite_values_and_gradients(magnitude):
  teacher = jnp.asarray(extreme_logits(11, magnitude), jnp.float32)
  student = jnp.asarray(extreme_logits(12, magnitude), jnp.float32)
  labels = jnp.asarray(np.random.default_rng(11).integers(0, CLASSES, BATCH))

  def total(t, s):
    tckd, nckd = losses.decoupled_kl(t, s, labels, 4.0)
    return (losses.softened_kl(t, s, 4.0) + tckd + 8.0 * nckd
            + losses.cross_entropy(s, labels)).mean()

  value, grads = jax.value_and_grad(total, argnums=(0, 1))(teacher, student)
  assert np.isfinite(value)
  assert all(bool(jnp.all(jnp.isfinite(g))) for g in grads)


@pytest.mark.parametrize("magnitude", [1e3, 1e4])
def test_extreme_limits(magnitude):
  """Identical extreme logits give 0; a one-hot teacher gives −T²·log q_y."""
  teacher = extreme_logits(13, magnitude)
  labels = np.argmax(teacher, axis=1)
  teacher32 = jnp.asarray(teacher, jnp.float32)
  np.testing.assert_allclose(losses.softened_kl(teacher32, teacher32, 4.0),
                             np.zeros(BATCH), atol=1e-6)
  tckd, nckd = losses.decoupled_kl(teacher32, teacher32, labels, 4.0)
  np.testing.assert_allclose(tckd, np.zeros(BATCH), atol=1e-6)
  np.testing.assert_allclose(nckd, np.zeros(BATCH), atol=1e-6)
  one_hot = np.full((BATCH, CLASSES), -magnitude)
  one_hot[np.arange(BATCH), labels] = magnitude
  _, student, _ = random_problem(13)
  got = losses.softened_kl(jnp.asarray(one_hot, jnp.float32),
                           jnp.asarray(student, jnp.float32), 4.0)
  log_q = np.stack([ref.log_softmax(row / 4.0) for row in student])
  np.testing.assert_allclose(got, -16.0 * log_q[np.arange(BATCH), labels],
                             **F32_TOL)


# --- gradients ----------------------------------------------------------------


def test_gradients_softened_kl(x64):
  teacher, student, _ = random_problem(14)
  check_grads(
      lambda t, s: losses.softened_kl(t, s, 4.0).mean(),
      (teacher, student), order=1, modes=["rev"],
  )
  temperature = np.linspace(1.0, 3.0, BATCH)
  check_grads(
      lambda t, s: losses.softened_kl(t, s, temperature, t2_factor=4.0).mean(),
      (teacher, student), order=1, modes=["rev"],
  )


def test_gradients_decoupled_kl(x64):
  teacher, student, labels = random_problem(15)

  def dkd(t, s):
    tckd, nckd = losses.decoupled_kl(t, s, labels, 4.0)
    return (tckd + 8.0 * nckd).mean()

  check_grads(dkd, (teacher, student), order=1, modes=["rev"])


def test_gradients_cross_entropy(x64):
  _, student, labels = random_problem(16)
  check_grads(
      lambda s: losses.cross_entropy(s, labels, label_smoothing=0.1).mean(),
      (student,), order=1, modes=["rev"],
  )


def test_kd_gradient_closed_form(x64):
  """∂/∂z_s mean_i T²·KL = T·(σ(z_s/T) − σ(z_t/T)) / B."""
  teacher, student, _ = random_problem(17)
  temperature = 4.0
  grad = jax.grad(
      lambda s: losses.batch_mean(losses.softened_kl(teacher, s, temperature))
  )(student)
  p_s = np.stack([ref.softmax(row / temperature) for row in student])
  p_t = np.stack([ref.softmax(row / temperature) for row in teacher])
  np.testing.assert_allclose(
      grad, temperature * (p_s - p_t) / BATCH, rtol=1e-10, atol=1e-14
  )


# --- warmup, features, anchor -------------------------------------------------


def test_dkd_warmup_factor():
  assert losses.dkd_warmup_factor(5, 20) == pytest.approx(0.25)
  assert losses.dkd_warmup_factor(10.5, 20) == pytest.approx(0.525)
  assert losses.dkd_warmup_factor(25, 20) == 1.0
  assert losses.dkd_warmup_factor(1, 1) == 1.0
  traced = jax.jit(lambda e: losses.dkd_warmup_factor(e, 20))(jnp.float32(4.0))
  assert traced == pytest.approx(0.2)
  with pytest.raises(ValueError):
    losses.dkd_warmup_factor(1, 0)


def test_feature_mse():
  rng = np.random.default_rng(18)
  student = rng.standard_normal((2, 4, 4, 8))
  teacher = rng.standard_normal((2, 4, 4, 8))
  expected = sum((s - t)**2 for s, t in zip(student.ravel(), teacher.ravel()))
  expected /= student.size
  got = losses.feature_mse(jnp.asarray(student, jnp.float32),
                           jnp.asarray(teacher, jnp.float32))
  assert got == pytest.approx(expected, rel=1e-5)
  with pytest.raises(ValueError):
    losses.feature_mse(student, teacher[..., :4])


class TinyNet(nn.Module):
  """Conv → BatchNorm → Dense, the leaf kinds ATSC's selection distinguishes."""

  @nn.compact
  def __call__(self, x):
    x = nn.Conv(4, (3, 3), use_bias=False)(x)
    x = nn.BatchNorm(use_running_average=True)(x)
    return nn.Dense(3)(x.mean(axis=(1, 2)))


def test_anchor_mask_selects_kernels_only():
  variables = TinyNet().init(jax.random.key(0), jnp.zeros((1, 5, 5, 2)))
  mask = losses.anchor_mask(variables["params"])
  assert mask == {
      "Conv_0": {"kernel": True},
      "BatchNorm_0": {"scale": False, "bias": False},
      "Dense_0": {"kernel": True, "bias": False},
  }


def test_squared_distance_to_anchor():
  variables = TinyNet().init(jax.random.key(1), jnp.zeros((1, 5, 5, 2)))
  anchor = variables["params"]
  params = jax.tree.map(lambda x: x + 0.5 * jnp.ones_like(x), anchor)
  params["Dense_0"]["kernel"] = anchor["Dense_0"]["kernel"] + 2.0
  mask = losses.anchor_mask(anchor)
  # Conv kernel 3·3·2·4 = 72 elements at 0.5², Dense kernel 4·3 = 12 at 2².
  expected_selected = 72 * 0.25 + 12 * 4.0
  expected_all = expected_selected + (4 + 4 + 3) * 0.25
  got = losses.squared_distance_to_anchor(params, anchor, mask)
  assert got == pytest.approx(expected_selected, rel=1e-6)
  assert losses.squared_distance_to_anchor(params, anchor) == pytest.approx(
      expected_all, rel=1e-6
  )
  array_mask = jax.tree.map(jnp.asarray, mask)
  jitted = jax.jit(losses.squared_distance_to_anchor)(params, anchor,
                                                      array_mask)
  assert jitted == pytest.approx(expected_selected, rel=1e-6)
  grads = jax.grad(losses.squared_distance_to_anchor)(params, anchor, mask)
  np.testing.assert_allclose(grads["Dense_0"]["kernel"], 4.0)
  np.testing.assert_allclose(grads["Conv_0"]["kernel"], 1.0)
  np.testing.assert_allclose(grads["Dense_0"]["bias"], 0.0)
  np.testing.assert_allclose(grads["BatchNorm_0"]["scale"], 0.0)
