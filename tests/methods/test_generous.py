"""Generous Teacher: CE + λ·NCKD at temperature k·std against NumPy, and the three-stage
pipeline on digits (given standard teacher ▶ generous teacher ▶ KD student from it)."""

import os

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from jaxkd import config_validation, pipeline, train
from tests import numpy_reference as ref
from tests.config_files import load_config
from tests.methods.conftest import TEACHER_MODEL, digits_run


def softmax(logits):
  shifted = np.exp(logits - logits.max(-1, keepdims=True))
  return shifted / shifted.sum(-1, keepdims=True)


def std_over(logits, keep):
  """Per-sample std (ddof = 1) over the classes where `keep` is true."""
  return np.array([np.std(row[mask], ddof=1) for row, mask in zip(logits, keep)])


def gt_reference(teacher, student, labels, k, lam, source, classes, tckd_weight):
  """CE + λ·k²·mean KL(p̃_S ‖ p̃_G) [+ w·k²·mean KL(b_S ‖ b_G)], T_i = k·(std_i + 1e-7)."""
  teacher, student = teacher.astype(np.float64), student.astype(np.float64)
  rows = np.arange(len(labels))
  is_target = np.zeros(teacher.shape, bool)
  is_target[rows, labels] = True
  keep = ~is_target if classes == "non_target" else np.ones(teacher.shape, bool)
  t_teacher = k * (std_over(teacher, keep) + 1e-7)
  t_student = t_teacher if source == "teacher" else k * (std_over(student, keep) + 1e-7)
  nckd, tckd = [], []
  for i, y in enumerate(labels):
    others = ~is_target[i]
    q_t = softmax(teacher[i, others] / t_teacher[i])
    q_s = softmax(student[i, others] / t_student[i])
    nckd.append(np.sum(q_t * (np.log(q_t) - np.log(q_s))))
    p_t, p_s = softmax(teacher[i] / t_teacher[i]), softmax(student[i] / t_student[i])
    b_t, b_s = np.array([p_t[y], 1 - p_t[y]]), np.array([p_s[y], 1 - p_s[y]])
    tckd.append(np.sum(b_t * (np.log(b_t) - np.log(b_s))))
  ce = np.mean(ref.cross_entropy(student, labels))
  return ce + k**2 * (lam * np.mean(nckd) + tckd_weight * np.mean(tckd)), t_student


def test_default_loss(make_method, logit_loss_of, fixed_logits):
  """By default: CE + 1 · NCKD at T_i = 2 · std of each model's own logits over all classes,
  no TCKD."""
  total, _ = logit_loss_of(make_method("generous"))
  expected, _ = gt_reference(fixed_logits.teacher, fixed_logits.student, fixed_logits.labels,
                             2.0, 1.0, "own", "all", 0.0)
  assert float(total) == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("source, classes, tckd_weight", [
    ("own", "all", 0.0), ("teacher", "all", 0.0), ("own", "non_target", 0.0),
    ("own", "all", 0.5)])
def test_loss_equals_numpy(make_method, logit_loss_of, fixed_logits, source, classes,
                           tckd_weight):
  method = make_method("generous", std_multiple=3.0, nckd_weight=2.0, std_source=source,
                       std_classes=classes, tckd_weight=tckd_weight)
  total, metrics = logit_loss_of(method)
  expected, temperature = gt_reference(fixed_logits.teacher, fixed_logits.student,
                                       fixed_logits.labels, 3.0, 2.0, source, classes,
                                       tckd_weight)
  assert float(total) == pytest.approx(expected, rel=1e-5)
  assert float(metrics["generous/temperature_mean"]) == pytest.approx(temperature.mean(),
                                                                       rel=1e-5)
  assert float(metrics["loss/tckd"]) > 0  # Logged even when its weight is 0.


@pytest.mark.parametrize("settings, message", [
    ({"std_source": "both"}, "std_source must be 'own' or 'teacher'"),
    ({"std_classes": "target"}, "std_classes must be 'all' or 'non_target'"),
])
def test_bad_settings_are_named(make_method, settings, message):
  with pytest.raises(ValueError, match=message):
    make_method("generous", **settings)


def test_config_is_standard_then_generous_then_student():
  config = load_config("generous_teacher_cifar100")
  config.dataset = "cifar10_jpeg"
  assert tuple(config.stage_order) == ("standard", "generous", "student")
  standard, generous, student = (pipeline.resolve_stage(config, name, "/w")
                                 for name in config.stage_order)
  assert (standard.method, generous.method, student.method) == ("ce", "generous", "kd")
  assert generous.teacher_model == standard.student_model == generous.student_model
  assert generous.teacher_checkpoint == "/w/standard"
  assert student.teacher_model == generous.student_model
  assert student.teacher_checkpoint == "/w/generous"
  for stage in (standard, generous, student):
    assert stage.dataset == "cifar10_jpeg"
    config_validation.validate(stage)


@pytest.mark.slow
def test_pipeline_on_digits(digits_teacher_workdir, tmp_path, initial_and_final_state,
                            assert_only_student_side_moved):
  """The given teacher replaces `standard`; the generous teacher (cnn_small here) learns and
  a student distils from its export as from any teacher."""
  config = load_config("generous_teacher_cifar100")
  config.dataset, config.batch_size, config.eval_batch_size, config.num_epochs = (
      "digits", 64, 120, 3)
  config.teacher_checkpoint = digits_teacher_workdir
  for name, model, teacher in (("generous", "cnn_small", "cnn_large"),
                               ("student", "cnn_small", "cnn_small")):
    stage = config.stages[name]
    stage.student_model, stage.teacher_model = model, teacher
    stage.eval_every_epochs, stage.log_every_steps = 3, 22
  summary = train.train_and_evaluate(config, str(tmp_path))
  assert set(summary["stages"]) == {"generous", "student"}
  generous = summary["stages"]["generous"]
  assert generous["teacher_test_accuracy"][0] > 0.9
  assert generous["final_test_accuracy"] > 0.7, generous["final_test_accuracy"]
  student = summary["stages"]["student"]
  assert student["teacher_test_accuracy"][0] == pytest.approx(generous["final_test_accuracy"])
  assert student["final_test_accuracy"] > 0.7, student["final_test_accuracy"]
  stage = pipeline.resolve_stage(config, "generous", str(tmp_path))
  assert_only_student_side_moved(*initial_and_final_state(stage, str(tmp_path / "generous")))


@pytest.mark.slow
def test_init_from_teacher_starts_g_from_the_standard_teacher(digits_teacher_workdir, tmp_path):
  """With `init_from_teacher`, G's first weights are S's: one step at learning rate 0 keeps
  them, so G's export equals S's."""
  config = digits_run("generous", TEACHER_MODEL, 1)
  config.teacher_model, config.teacher_checkpoint = TEACHER_MODEL, digits_teacher_workdir
  config.generous.init_from_teacher = True
  config.max_steps = 1
  config.optimizer.learning_rate, config.optimizer.weight_decay = 0.0, 0.0
  train.train_and_evaluate(config, str(tmp_path))
  checkpointer = ocp.StandardCheckpointer()
  teacher = checkpointer.restore(os.path.join(digits_teacher_workdir, "export", "variables"))
  generous = checkpointer.restore(os.path.join(str(tmp_path), "export", "variables"))
  for a, b in zip(jax.tree.leaves(teacher["params"]), jax.tree.leaves(generous["params"])):
    np.testing.assert_array_equal(a, b)
