"""Shared fixtures of the method tests: a trained digits teacher, fixed and random logits, runs.

`digits_teacher_workdir` trains a cnn_large teacher with CE on the real `digits` data set
once per test session and returns its workdir, which any distillation run loads as
`config.teacher_checkpoint` (with `config.teacher_model='cnn_large'`).
"""

import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxkd import checkpoint, data, methods, recipes, run_builder, train
from jaxkd import step as step_lib
from jaxkd.methods import base

TEACHER_MODEL = "cnn_large"


def digits_run(method: str, model: str, epochs: int):
  """A short CIFAR-recipe run of `method` on digits (1,437 training images, 8×8×1)."""
  config = recipes.cifar_run(method, model, "digits")
  config.batch_size, config.eval_batch_size, config.num_epochs = 64, 120, epochs
  config.eval_every_epochs = epochs
  config.log_every_steps = 22
  return config


@pytest.fixture(scope="session")
def digits_teacher_workdir(tmp_path_factory) -> str:
  """Workdir of a cnn_large teacher trained with CE on digits (> 90% eval accuracy)."""
  workdir = str(tmp_path_factory.mktemp("digits_teacher"))
  summary = train.train_and_evaluate(digits_run("ce", TEACHER_MODEL, 6), workdir)
  assert summary["final_test_accuracy"] > 0.9, summary["final_test_accuracy"]
  return workdir


@pytest.fixture
def distill_on_digits(digits_teacher_workdir, tmp_path):
  """`run(method, model='cnn_small', epochs=3, **settings) -> (config, summary, workdir)`."""

  def run(method: str, model: str = "cnn_small", epochs: int = 3, **settings):
    config = digits_run(method, model, epochs)
    config.teacher_model, config.teacher_checkpoint = TEACHER_MODEL, digits_teacher_workdir
    config[method].update(settings)
    workdir = str(tmp_path / method)
    return config, train.train_and_evaluate(config, workdir), workdir

  return run


@pytest.fixture
def initial_and_final_state():
  """`states(config, workdir) -> (initial, final)` of a finished run, on the host.

  The initial state is rebuilt from the config (same seed, same teacher checkpoint);
  the final one is the run's last checkpoint.
  """

  def states(config, workdir):
    mesh = step_lib.create_mesh()
    run, _ = run_builder.build_run(config, data.dataset_info(config.dataset), steps_per_epoch=1,
                             mesh=mesh)
    store = checkpoint.CheckpointStore(workdir, config.keep_checkpoints)
    final, _ = store.restore_latest(run.state)
    store.close()
    return jax.device_get(run.state), jax.device_get(final)

  return states


@pytest.fixture
def assert_only_student_side_moved():
  """Checks a run's states: the teacher bit-identical, every student (and extra) leaf moved."""

  def check(initial, final, extra_moves: bool = False):
    for group in ("params", "batch_stats"):
      teacher_before = jax.tree.leaves(getattr(initial, group)["teachers"])
      teacher_after = jax.tree.leaves(getattr(final, group)["teachers"])
      assert teacher_before and len(teacher_before) == len(teacher_after)
      for before, after in zip(teacher_before, teacher_after):
        np.testing.assert_array_equal(before, after)
    for group in ("student", "extra") if extra_moves else ("student",):
      pairs = list(zip(jax.tree.leaves(initial.params[group]),
                       jax.tree.leaves(final.params[group])))
      assert pairs and all(not np.array_equal(a, b) for a, b in pairs), group
    assert int(final.step) > int(initial.step)

  return check


@pytest.fixture(scope="session")
def fixed_logits():
  """Teacher/student logits (12 × 10) and labels; the teacher is right on half the samples."""
  rng = np.random.default_rng(0)
  batch, classes = 12, 10
  teacher = rng.normal(0, 3, (batch, classes)).astype(np.float32)
  student = rng.normal(0, 2, (batch, classes)).astype(np.float32)
  labels = rng.integers(0, classes, batch).astype(np.int32)
  teacher[np.arange(batch // 2), labels[:batch // 2]] += 12.0
  return types.SimpleNamespace(teacher=teacher, student=student, labels=labels)


@pytest.fixture(scope="session")
def random_logits():
  """`logits(seed, batch=8) -> (teacher, student, labels)`: N(0, 3²) float64 logits, 10 classes."""

  def logits(seed: int, batch: int = 8, classes: int = 10, scale: float = 3.0):
    rng = np.random.default_rng(seed)
    teacher = scale * rng.standard_normal((batch, classes))
    student = scale * rng.standard_normal((batch, classes))
    labels = rng.integers(0, classes, size=batch)
    return teacher, student, labels

  return logits


@pytest.fixture(scope="session")
def make_method():
  """`make(name, **settings)`: the registered method with its section updated, validated."""

  def make(name: str, **settings) -> base.Method:
    config = recipes.cifar_run(name, "cnn_small", "digits")
    config.teacher_model, config.teacher_checkpoint = TEACHER_MODEL, "/unused"
    config[name].update(settings)
    method = methods.create_method(config)
    method.validate()
    return method

  return make


def step_info(epoch: int) -> base.StepInfo:
  return base.StepInfo(step=jnp.asarray(0), epoch=jnp.asarray(epoch))


@pytest.fixture(scope="session")
def logit_loss_of(fixed_logits):
  """`loss(method, epoch=5, teacher=..., student=...) -> (total, metrics)` on host floats."""

  def loss(method, epoch: int = 5, teacher=None, student=None, labels=None):
    teacher = fixed_logits.teacher if teacher is None else teacher
    student = fixed_logits.student if student is None else student
    labels = fixed_logits.labels if labels is None else labels
    total, metrics = method.logit_loss(jnp.asarray(teacher), jnp.asarray(student),
                                       jnp.asarray(labels), step_info(epoch), None)
    return float(total), {k: float(v) for k, v in jax.device_get(metrics).items()}

  return loss
