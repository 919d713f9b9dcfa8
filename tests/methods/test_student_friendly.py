"""Student-friendly KD (SKD): the simplifier's forward and the loss against NumPy, gradients
reaching the simplifier but not the teacher, and a run where the simplifier moves."""

import functools
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxkd.methods import base
from tests import numpy_reference as ref

CLASSES = 10
STEP = base.StepInfo(step=jnp.asarray(0), epoch=jnp.asarray(1))


def simplifier(make_method, **settings):
  """(method, networks with the simplifier as `extra`, its initial params)."""
  method = make_method("student_friendly", **settings)
  logits_shape = jax.ShapeDtypeStruct((2, CLASSES), jnp.float32)
  shapes = base.ShapeInfo(student=None, teachers=((None, logits_shape),))
  module, params, stats = method.init_extra(jax.random.key(0), None, shapes)
  assert stats == {}
  return method, types.SimpleNamespace(extra=module), params


def perturbed(params, scale=0.1):
  leaves, tree = jax.tree.flatten(params)
  keys = jax.random.split(jax.random.key(1), len(leaves))
  return jax.tree.unflatten(tree, [p + scale * jax.random.normal(k, p.shape)
                                   for p, k in zip(leaves, keys)])


def batch_attention_reference(u, attention, residual):
  """Multi-head scaled dot-product self-attention over the batch axis, float64."""
  def project(name):
    return np.einsum("bc,chd->bhd", u, attention[name]["kernel"]) + attention[name]["bias"]
  q, k, v = project("query"), project("key"), project("value")
  scores = np.einsum("bhd,ehd->hbe", q, k) / np.sqrt(q.shape[-1])
  weights = np.exp(scores - scores.max(-1, keepdims=True))
  weights /= weights.sum(-1, keepdims=True)
  out = np.einsum("hbe,ehd->bhd", weights, v)
  attended = np.einsum("bhd,hdc->bc", out, attention["out"]["kernel"]) + attention["out"]["bias"]
  return u + attended if residual else attended


def simplifier_with(nets, params):
  """The simplifier as `logit_loss` receives it: u ↦ S_ψ(u) with ψ = `params`."""
  return functools.partial(nets.extra.apply, {"params": params})


def loss_of(method, nets, params, fixed_logits):
  total, metrics = method.logit_loss(jnp.asarray(fixed_logits.teacher),
                                     jnp.asarray(fixed_logits.student),
                                     jnp.asarray(fixed_logits.labels), STEP,
                                     simplifier_with(nets, params))
  return float(total), {k: float(v) for k, v in jax.device_get(metrics).items()}


def test_default_simplifier_and_loss(make_method, fixed_logits):
  """By default: one-head residual attention over the batch on z_t / 4, the student at T = 4,
  CE + KD + CE of the simplified logits, each weighted 1."""
  method, nets, params = simplifier(make_method)
  params = perturbed(params)
  u = fixed_logits.teacher.astype(np.float64) / 4.0
  simplified = batch_attention_reference(u, jax.device_get(params["attention"]), True)
  total, _ = loss_of(method, nets, params, fixed_logits)
  student, labels = fixed_logits.student, fixed_logits.labels
  target = np.stack([ref.softmax(row) for row in simplified])
  expected = (np.mean(ref.cross_entropy(student, labels))
              + np.mean(ref.kl_to_target(target, student, 4.0))
              + np.mean(ref.cross_entropy(simplified, labels)))
  assert total == pytest.approx(expected, rel=1e-4)


def test_residual_simplifier_starts_as_the_identity_so_the_loss_starts_as_kd(
    make_method, fixed_logits):
  method, nets, params = simplifier(make_method, simplifier_ce_weight=0.5)
  total, metrics = loss_of(method, nets, params, fixed_logits)
  teacher, student, labels = fixed_logits.teacher, fixed_logits.student, fixed_logits.labels
  expected = (np.mean(ref.cross_entropy(student, labels))
              + np.mean(ref.softened_kl(teacher, student, 4.0))
              + 0.5 * np.mean(ref.cross_entropy(teacher / 4.0, labels)))
  assert total == pytest.approx(expected, rel=1e-5)
  assert metrics["skd/kl_to_teacher"] == pytest.approx(0.0, abs=1e-6)
  assert metrics["skd/simplifier_accuracy"] == pytest.approx(
      np.mean(teacher.argmax(1) == labels))


@pytest.mark.parametrize("residual, again, heads", [
    (True, False, 1), (False, False, 1), (True, True, 2)])
def test_batch_attention_forward_and_loss_equal_numpy(make_method, fixed_logits, residual,
                                                      again, heads):
  method, nets, params = simplifier(make_method, residual=residual,
                                    apply_temperature_again=again, num_heads=heads)
  params = perturbed(params)
  u = fixed_logits.teacher.astype(np.float64) / 4.0
  simplified = batch_attention_reference(u, jax.device_get(params["attention"]), residual)
  np.testing.assert_allclose(nets.extra.apply({"params": params}, jnp.asarray(u, jnp.float32)),
                             simplified, rtol=1e-4, atol=1e-5)
  target = np.stack([ref.softmax(row / (4.0 if again else 1.0)) for row in simplified])
  student, labels = fixed_logits.student, fixed_logits.labels
  total, metrics = loss_of(method, nets, params, fixed_logits)
  kd = np.mean(ref.kl_to_target(target, student, 4.0))
  expected = (np.mean(ref.cross_entropy(student, labels)) + kd
              + np.mean(ref.cross_entropy(simplified, labels)))
  assert total == pytest.approx(expected, rel=1e-4)
  teacher_softened = np.stack([ref.softmax(row) for row in u])
  kl_to_teacher = np.mean(np.sum(target * (np.log(target) - np.log(teacher_softened)), 1))
  assert metrics["skd/kl_to_teacher"] == pytest.approx(kl_to_teacher, rel=1e-4)
  assert metrics["skd/simplifier_accuracy"] == pytest.approx(
      np.mean(simplified.argmax(1) == labels))


@pytest.mark.slow
def test_class_axis_keeps_shapes_and_trains(make_method, fixed_logits):
  method, nets, params = simplifier(make_method, attention_axis="class", num_heads=2, dim=8)
  assert params["embed"]["kernel"].shape == (1, 8)
  assert jax.eval_shape(lambda u: nets.extra.apply({"params": params}, u),
                        fixed_logits.teacher).shape == (12, CLASSES)
  assert not np.any(params["unembed"]["kernel"])  # Residual: starts as the identity.
  grads = jax.jit(jax.grad(lambda p: method.logit_loss(
      jnp.asarray(fixed_logits.teacher), jnp.asarray(fixed_logits.student),
      jnp.asarray(fixed_logits.labels), STEP, simplifier_with(nets, p))[0]))(perturbed(params))
  assert all(np.any(g != 0) for g in jax.tree.leaves(grads))


def test_gradients_reach_the_simplifier_and_not_the_teacher(make_method, fixed_logits):
  method, nets, params = simplifier(make_method)
  labels = jnp.asarray(fixed_logits.labels)

  def total(extra, teacher, student):
    return method.logit_loss(teacher, student, labels, STEP, simplifier_with(nets, extra))[0]

  g_extra, g_teacher, g_student = jax.jit(jax.grad(total, argnums=(0, 1, 2)))(
      params, jnp.asarray(fixed_logits.teacher), jnp.asarray(fixed_logits.student))
  np.testing.assert_array_equal(g_teacher, 0.0)
  assert np.any(g_student != 0)
  assert np.any(g_extra["attention"]["out"]["kernel"] != 0)


@pytest.mark.parametrize("settings, message", [
    ({"attention_axis": "channel"}, "attention_axis must be 'batch' or 'class'"),
    ({"dim": 6, "num_heads": 4}, "dim must be a multiple of num_heads"),
])
def test_bad_settings_are_named(make_method, settings, message):
  with pytest.raises(ValueError, match=message):
    make_method("student_friendly", **settings)


def test_heads_must_divide_the_classes(make_method):
  with pytest.raises(ValueError, match="num_heads=3 must divide the 10 classes"):
    simplifier(make_method, num_heads=3)


@pytest.mark.slow
def test_student_learns_and_the_simplifier_moves(distill_on_digits, initial_and_final_state,
                                                 assert_only_student_side_moved):
  config, summary, workdir = distill_on_digits("student_friendly")
  assert summary["final_test_accuracy"] > 0.7, summary["final_test_accuracy"]
  assert_only_student_side_moved(*initial_and_final_state(config, workdir), extra_moves=True)
