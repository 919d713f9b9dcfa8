"""KA, DTD, LS-KD, SKD (student-friendly), Generous Teacher and their composition with KD/DKD.

Golden values come from tests/numpy_reference.py (written from methods.md's equations).
"""

import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxkd import methods, recipes, train
from jaxkd import step as step_lib
from jaxkd.methods import base
from tests import numpy_reference as ref
from tests.core.test_step import INFO, batches, export_random_teacher

B, C = 12, 10
RNG = np.random.default_rng(0)
TEACHER = RNG.normal(0, 3, (B, C)).astype(np.float32)
STUDENT = RNG.normal(0, 2, (B, C)).astype(np.float32)
LABELS = RNG.integers(0, C, B).astype(np.int32)
TEACHER[np.arange(B // 2), LABELS[:B // 2]] += 12.0  # Right on half the samples.
STEP = base.StepInfo(step=jnp.asarray(0), epoch=jnp.asarray(5))


def method(name, **settings):
  config = recipes.cifar_run(name, "cnn_small", "digits")
  config.teacher_model, config.teacher_checkpoint = "cnn_large", "/t"
  config[name].update(settings)
  return methods.create_method(config)


def ce_ref(logits=STUDENT):
  return float(np.mean(ref.cross_entropy(logits, LABELS)))


def loss_of(m, teacher=TEACHER, student=STUDENT):
  total, metrics = m.logit_loss(jnp.asarray(teacher), jnp.asarray(student), jnp.asarray(LABELS),
                                STEP)
  return float(total), jax.device_get(metrics)


def test_kd_golden():
  total, _ = loss_of(method("kd"))
  expected = 0.1 * ce_ref() + 0.9 * np.mean(ref.softened_kl(TEACHER, STUDENT, 4.0))
  assert total == pytest.approx(expected, rel=1e-5)


def test_ka_probability_shift_golden_and_adjusted_fraction():
  total, metrics = loss_of(method("ka"))
  shifted, _ = ref.probability_shift(TEACHER, LABELS)
  expected = 0.1 * ce_ref() + 0.9 * np.mean(ref.softened_kl(shifted, STUDENT, 4.0))
  assert total == pytest.approx(expected, rel=1e-5)
  wrong = np.mean(np.argmax(TEACHER, 1) != LABELS)
  assert 0 < wrong < 1 and metrics["ka/adjusted_fraction"] == pytest.approx(wrong)


def test_ka_label_smoothing_golden():
  total, _ = loss_of(method("ka", ka_variant="lsr", ka_rho=0.8))
  target = ref.label_smoothing_for_wrong_probs(TEACHER, LABELS, 4.0, 0.8)
  expected = 0.1 * ce_ref() + 0.9 * np.mean(ref.kl_to_target(target, STUDENT, 4.0))
  assert total == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("weight", ["flsw", "cwsm"])
def test_dtd_golden_with_per_sample_t2(weight):
  total, metrics = loss_of(method("dtd", dtd_weight=weight, dtd_beta=2.0))
  tau = ref.dynamic_temperatures(STUDENT, TEACHER, 4.0, 2.0, weight, 2.0, 1.0)
  expected = 0.1 * ce_ref() + 0.9 * np.mean(ref.softened_kl(TEACHER, STUDENT, tau))
  assert total == pytest.approx(expected, rel=1e-5)
  assert metrics["dtd/temperature_min"] == pytest.approx(tau.min(), rel=1e-5)
  assert metrics["dtd/temperature_max"] == pytest.approx(tau.max(), rel=1e-5)
  without_t2, _ = loss_of(method("dtd", dtd_weight=weight, dtd_beta=2.0, dtd_t2=False))
  expected = 0.1 * ce_ref() + 0.9 * np.mean(ref.softened_kl(TEACHER, STUDENT, tau, t2_factor=1.0))
  assert without_t2 == pytest.approx(expected, rel=1e-5)


def test_lskd_golden():
  total, _ = loss_of(method("lskd"))
  z_t, z_s = ref.standardize_logits(TEACHER), ref.standardize_logits(STUDENT)
  expected = 0.1 * ce_ref() + 9.0 * np.mean(ref.softened_kl(z_t, z_s, 2.0, t2_factor=4.0))
  assert total == pytest.approx(expected, rel=1e-5)


def test_ka_then_dtd_then_dkd_composes_from_config_alone():
  total, metrics = loss_of(method("dkd", transforms="ka,dtd"))
  shifted, _ = ref.probability_shift(TEACHER, LABELS)
  tau = ref.dynamic_temperatures(STUDENT, shifted, 4.0, 1.0, "flsw", 2.0, 1.0)
  tckd, nckd = ref.decoupled_kl(shifted, STUDENT, LABELS, tau)  # Factor τ_i², as dtd_t2.
  expected = ce_ref() + 5 / 20 * (np.mean(tckd) + 8.0 * np.mean(nckd))
  assert total == pytest.approx(expected, rel=1e-5)
  assert "ka/adjusted_fraction" in metrics and "dtd/temperature_mean" in metrics


@pytest.mark.parametrize("std_source", ["own", "teacher"])
def test_generous_nckd_at_a_multiple_of_the_logit_std(std_source):
  m = method("generous", std_multiple=3.0, nckd_weight=2.0, std_source=std_source)
  total, metrics = m.logit_loss(jnp.asarray(TEACHER), jnp.asarray(STUDENT), jnp.asarray(LABELS))
  t_teacher = 3.0 * (ref.logit_std(TEACHER) + 1e-7)
  t_student = t_teacher if std_source == "teacher" else 3.0 * (ref.logit_std(STUDENT) + 1e-7)
  _, nckd = ref.decoupled_kl(TEACHER, STUDENT, LABELS, t_student, t_teacher)
  nckd = nckd / t_student**2 * 9.0  # The reference's factor is T_i²; GT's is k².
  assert float(total) == pytest.approx(ce_ref() + 2.0 * np.mean(nckd), rel=1e-5)
  assert float(metrics["loss/tckd"]) > 0  # Computed and logged, weighted 0 by default.


def simplifier_setup(**settings):
  m = method("student_friendly", **settings)
  shapes = base.ShapeInfo(student=None, teachers=((None, jax.ShapeDtypeStruct((2, C), jnp.float32)),))
  module, params, _ = m.init_extra(jax.random.key(0), None, shapes)
  return m, types.SimpleNamespace(extra=module), params


def test_student_friendly_starts_as_plain_kd():
  m, nets, params = simplifier_setup(simplifier_ce_weight=0.5)
  total, metrics = m.logit_loss(nets, params, jnp.asarray(TEACHER), jnp.asarray(STUDENT),
                                jnp.asarray(LABELS))
  expected = (ce_ref() + np.mean(ref.softened_kl(TEACHER, STUDENT, 4.0))
              + 0.5 * ce_ref(TEACHER / 4.0))
  assert float(total) == pytest.approx(expected, rel=1e-5)
  assert float(metrics["skd/kl_to_teacher"]) == pytest.approx(0.0, abs=1e-6)


def test_student_friendly_batch_attention_golden():
  m, nets, params = simplifier_setup()
  params = jax.tree.map(lambda p: p + 0.1 * jax.random.normal(jax.random.key(1), p.shape), params)
  attention = jax.device_get(params["attention"])
  u = TEACHER.astype(np.float64) / 4.0
  project = lambda name: np.einsum("bc,chd->bhd", u, attention[name]["kernel"]) + attention[name]["bias"]
  q, k, v = project("query"), project("key"), project("value")
  scores = np.einsum("bhd,ehd->hbe", q, k) / np.sqrt(q.shape[-1])
  weights = np.exp(scores - scores.max(-1, keepdims=True))
  weights /= weights.sum(-1, keepdims=True)
  out = np.einsum("hbe,ehd->bhd", weights, v)
  simplified = u + np.einsum("bhd,hdc->bc", out, attention["out"]["kernel"]) + attention["out"]["bias"]
  target = np.stack([ref.softmax(row) for row in simplified])
  total, metrics = m.logit_loss(nets, params, jnp.asarray(TEACHER), jnp.asarray(STUDENT),
                                jnp.asarray(LABELS))
  expected = (ce_ref() + np.mean(ref.kl_to_target(target, STUDENT, 4.0))
               + ce_ref(simplified))
  assert float(total) == pytest.approx(expected, rel=1e-4)
  assert float(metrics["skd/kl_to_teacher"]) > 0


def test_student_friendly_class_axis_runs_and_keeps_shapes():
  m, nets, params = simplifier_setup(attention_axis="class", num_heads=2, dim=8)
  total, _ = m.logit_loss(nets, params, jnp.asarray(TEACHER), jnp.asarray(STUDENT),
                          jnp.asarray(LABELS))
  assert np.isfinite(float(total))


@pytest.mark.parametrize("name, settings, message", [
    ("kd", {"transforms": "ka,warp"}, "unknown teacher transform"),
    ("dkd", {"transforms": "ka", "ka_variant": "lsr"}, "cannot decouple"),
    ("kd", {"transforms": "ka,dtd", "ka_variant": "lsr"}, "must be the last transform"),
    ("dtd", {"dtd_weight": "focal"}, "dtd_weight must be 'flsw' or 'cwsm'"),
    ("student_friendly", {"attention_axis": "channel"}, "attention_axis must be"),
    ("generous", {"std_source": "both"}, "std_source must be"),
])
def test_bad_settings_are_named(name, settings, message):
  with pytest.raises(ValueError, match=message):
    method(name, **settings).validate()


@pytest.mark.parametrize("name", ["ka", "dtd", "lskd", "student_friendly", "generous"])
def test_teacher_never_moves_and_the_student_does(tmp_path, name):
  config = recipes.cifar_run(name, "cnn_small", "digits")
  config.teacher_model = "cnn_large"
  config.teacher_checkpoint = export_random_teacher(tmp_path / "teacher")
  config.batch_size = 16
  mesh = step_lib.create_mesh()
  run, _ = train.build_run(config, INFO, steps_per_epoch=10, mesh=mesh)
  before = jax.device_get(run.state)
  state = run.state
  for batch in batches(3):
    state, metrics = run.train_step(state, jax.device_put(batch, step_lib.batch_sharding(mesh)))
  after = jax.device_get(state)
  assert np.isfinite(metrics["loss"])
  for key in ("params", "batch_stats"):
    for a, b in zip(jax.tree.leaves(getattr(before, key)["teachers"]),
                    jax.tree.leaves(getattr(after, key)["teachers"])):
      np.testing.assert_array_equal(a, b)
  assert any(not np.array_equal(a, b) for a, b in zip(jax.tree.leaves(before.params["student"]),
                                                       jax.tree.leaves(after.params["student"])))
  if name == "student_friendly":
    extra_moved = [not np.array_equal(a, b) for a, b in
                   zip(jax.tree.leaves(before.params["extra"]), jax.tree.leaves(after.params["extra"]))]
    assert extra_moved and all(extra_moved)
