"""Golden-value and identity tests for jaxkd.teacher_transforms."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from jaxkd import losses
from jaxkd import teacher_transforms as tt
from tests import numpy_reference as ref

BATCH, CLASSES = 8, 10
F32_TOL = dict(rtol=2e-5, atol=2e-5)


@pytest.fixture
def x64():
  with jax.enable_x64(True):
    yield


def random_problem(seed, batch=BATCH, classes=CLASSES, scale=3.0):
  rng = np.random.default_rng(seed)
  teacher = scale * rng.standard_normal((batch, classes))
  student = scale * rng.standard_normal((batch, classes))
  labels = rng.integers(0, classes, size=batch)
  return teacher, student, labels


def softmax_rows(logits, temperature=1.0):
  return np.stack([ref.softmax(row / temperature) for row in logits])


# --- standardisation ----------------------------------------------------------


@pytest.mark.parametrize("ddof", [0, 1])
def test_logit_std_and_standardize_match_reference(ddof):
  teacher, _, _ = random_problem(0)
  z = jnp.asarray(teacher, jnp.float32)
  np.testing.assert_allclose(tt.logit_std(z, ddof=ddof),
                             ref.logit_std(teacher, ddof), **F32_TOL)
  np.testing.assert_allclose(tt.standardize_logits(z, ddof=ddof),
                             ref.standardize_logits(teacher, ddof=ddof),
                             **F32_TOL)


def test_standardize_constant_logits_is_finite():
  logits = jnp.full((2, CLASSES), 3.5)
  np.testing.assert_array_equal(tt.standardize_logits(logits),
                                np.zeros((2, CLASSES)))
  grad = jax.grad(lambda z: jnp.sum(tt.standardize_logits(z) ** 2))(logits)
  assert bool(jnp.all(jnp.isfinite(grad)))


def test_standardisation_is_per_sample_temperature(x64):
  """σ(ẑ/τ) = σ(z/(τ·(std+eps))): LS-KD equals KD with temperature τ·std."""
  teacher, student, _ = random_problem(1)
  tau, eps = 2.0, 1e-7
  standardized = tt.standardize_logits(teacher, eps=eps)
  temperature = tau * (ref.logit_std(teacher) + eps)
  np.testing.assert_allclose(softmax_rows(np.asarray(standardized), tau),
                             softmax_rows(teacher / temperature[:, None]),
                             rtol=1e-13, atol=1e-15)
  ls_kd = losses.softened_kl(tt.standardize_logits(teacher),
                             tt.standardize_logits(student), tau)
  per_sample = losses.softened_kl(
      teacher, student, tau * (tt.logit_std(student) + eps),
      teacher_temperature=tau * (tt.logit_std(teacher) + eps),
      t2_factor=tau**2,
  )
  np.testing.assert_allclose(ls_kd, per_sample, rtol=1e-12)


# --- knowledge adjustment -----------------------------------------------------


def test_probability_shift_matches_reference():
  teacher, _, labels = random_problem(2)
  shifted, was_wrong = tt.probability_shift(jnp.asarray(teacher, jnp.float32),
                                            labels)
  ref_shifted, ref_wrong = ref.probability_shift(teacher, labels)
  assert ref_wrong.any() and not ref_wrong.all()
  np.testing.assert_array_equal(was_wrong, ref_wrong)
  np.testing.assert_allclose(shifted, ref_shifted, **F32_TOL)
  np.testing.assert_array_equal(np.argmax(shifted, axis=1), labels)


def test_probability_shift_is_noop_for_correct_teacher():
  teacher, _, _ = random_problem(3)
  labels = np.argmax(teacher, axis=1)
  z = jnp.asarray(teacher, jnp.float32)
  shifted, was_wrong = tt.probability_shift(z, labels)
  np.testing.assert_array_equal(shifted, z)
  assert not bool(was_wrong.any())


def test_probability_shift_is_permutation_equivariant(x64):
  """Shifting logits then softmax(·/T) equals shifting the probabilities."""
  teacher, _, labels = random_problem(4)
  temperature = 4.0
  shifted, _ = tt.probability_shift(teacher, labels)
  probs_of_shifted = softmax_rows(np.asarray(shifted), temperature)
  shifted_probs, _ = ref.probability_shift(softmax_rows(teacher, temperature),
                                           labels)
  np.testing.assert_allclose(probs_of_shifted, shifted_probs, rtol=1e-14,
                             atol=1e-16)


@pytest.mark.parametrize("temperature", [4.0, np.linspace(1.0, 4.0, BATCH)])
def test_label_smoothing_for_wrong_matches_reference(temperature):
  teacher, student, labels = random_problem(5)
  rho = 0.9
  log_probs, was_wrong = tt.label_smoothing_for_wrong(
      jnp.asarray(teacher, jnp.float32), labels,
      jnp.asarray(temperature, jnp.float32), rho,
  )
  expected = ref.label_smoothing_for_wrong_probs(teacher, labels, temperature,
                                                 rho)
  np.testing.assert_allclose(jnp.exp(log_probs), expected, **F32_TOL)
  np.testing.assert_array_equal(was_wrong,
                                np.argmax(teacher, axis=1) != labels)
  got = losses.kl_to_target(log_probs, jnp.asarray(student, jnp.float32),
                            temperature)
  np.testing.assert_allclose(
      got, ref.kl_to_target(expected, student, temperature), rtol=1e-4,
      atol=1e-4,
  )


def test_label_smoothing_rho_one_gives_finite_loss():
  teacher, student, labels = random_problem(6)
  log_probs, was_wrong = tt.label_smoothing_for_wrong(teacher, labels, 4.0, 1.0)
  assert bool(was_wrong.any())
  loss, grad = jax.value_and_grad(
      lambda s: losses.kl_to_target(log_probs, s, 4.0).mean()
  )(jnp.asarray(student, jnp.float32))
  expected = ref.kl_to_target(
      ref.label_smoothing_for_wrong_probs(teacher, labels, 4.0, 1.0), student,
      4.0,
  ).mean()
  assert loss == pytest.approx(expected, rel=1e-4)
  assert bool(jnp.all(jnp.isfinite(grad)))


# --- dynamic temperature ------------------------------------------------------


DTD_SETTINGS = dict(base_temperature=4.0, beta=1.5, gamma=2.0,
                    min_temperature=1.0)


@pytest.mark.parametrize("weight_kind", ["flsw", "cwsm"])
def test_dynamic_temperatures_match_reference(weight_kind):
  teacher, student, _ = random_problem(7)
  got = tt.dynamic_temperatures(
      jnp.asarray(student, jnp.float32), jnp.asarray(teacher, jnp.float32),
      weight_kind=weight_kind, **DTD_SETTINGS,
  )
  expected = ref.dynamic_temperatures(student, teacher,
                                      weight_kind=weight_kind, **DTD_SETTINGS)
  assert got.shape == (BATCH,)
  assert np.ptp(expected) > 0.1
  np.testing.assert_allclose(got, expected, **F32_TOL)


@pytest.mark.parametrize("weight_kind", ["flsw", "cwsm"])
def test_dynamic_temperatures_are_clamped(weight_kind):
  teacher, student, _ = random_problem(8)
  settings = dict(base_temperature=2.0, beta=50.0, gamma=1.0,
                  min_temperature=0.5)
  got = tt.dynamic_temperatures(student, teacher, weight_kind=weight_kind,
                                **settings)
  expected = ref.dynamic_temperatures(student, teacher,
                                      weight_kind=weight_kind, **settings)
  clamped = expected == 0.5
  assert clamped.any() and not clamped.all()
  assert float(jnp.min(got)) == 0.5
  np.testing.assert_allclose(got, expected, rtol=1e-4)


@pytest.mark.parametrize("weight_kind", ["flsw", "cwsm"])
def test_dynamic_temperatures_mask_excludes_padding(weight_kind):
  teacher, student, _ = random_problem(9)
  padded_student = np.concatenate([student, np.full((3, CLASSES), 40.0)])
  padded_student[BATCH:, 0] = -40.0
  padded_teacher = np.concatenate([teacher, -np.ones((3, CLASSES))])
  mask = np.arange(BATCH + 3) < BATCH
  got = tt.dynamic_temperatures(padded_student, padded_teacher,
                                weight_kind=weight_kind, mask=mask,
                                **DTD_SETTINGS)
  expected = ref.dynamic_temperatures(student, teacher,
                                      weight_kind=weight_kind, **DTD_SETTINGS)
  np.testing.assert_allclose(got[:BATCH], expected, **F32_TOL)
  unmasked = tt.dynamic_temperatures(padded_student, padded_teacher,
                                     weight_kind=weight_kind, **DTD_SETTINGS)
  assert not np.allclose(unmasked[:BATCH], expected, **F32_TOL)


def test_dynamic_temperatures_have_no_gradient():
  teacher, student, _ = random_problem(10)
  grads = jax.grad(
      lambda s, t: tt.dynamic_temperatures(
          s, t, weight_kind="flsw", **DTD_SETTINGS).sum(),
      argnums=(0, 1),
  )(jnp.asarray(student, jnp.float32), jnp.asarray(teacher, jnp.float32))
  for grad in grads:
    np.testing.assert_array_equal(grad, 0.0)


def test_dynamic_temperatures_use_global_batch_under_sharding():
  devices = np.array(jax.devices())
  teacher, student, _ = random_problem(11, batch=2 * len(devices))
  mesh = Mesh(devices, ("data",))
  sharding = NamedSharding(mesh, PartitionSpec("data"))
  compute = jax.jit(lambda s, t: tt.dynamic_temperatures(
      s, t, weight_kind="cwsm", **DTD_SETTINGS))
  sharded = compute(jax.device_put(jnp.asarray(student, jnp.float32), sharding),
                    jax.device_put(jnp.asarray(teacher, jnp.float32), sharding))
  expected = ref.dynamic_temperatures(student, teacher, weight_kind="cwsm",
                                      **DTD_SETTINGS)
  np.testing.assert_allclose(sharded, expected, **F32_TOL)


def test_unknown_weight_kind_raises():
  teacher, student, _ = random_problem(12)
  with pytest.raises(ValueError):
    tt.dynamic_temperatures(student, teacher, weight_kind="focal",
                            **DTD_SETTINGS)
