"""The sharded train step: 8 devices equal 1 device; a frozen teacher never changes; a method
updates its teachers its own way through the same step."""

import jax
import numpy as np
import optax
import pytest

from jaxkd import optim, recipes, run_builder
from jaxkd import step as step_lib
from jaxkd.methods import base

from tests.random_teachers import INFO, export_random_teacher


def kd_config(teacher_dir, method="kd"):
  config = recipes.cifar_run(method, "cnn_small", "digits")
  config.teacher_model = "cnn_large"
  config.teacher_checkpoint = teacher_dir
  config.batch_size = 16
  return config


def batches(num, batch_size=16, seed=0):
  rng = np.random.default_rng(seed)
  return [{"image": rng.normal(size=(batch_size, 8, 8, 1)).astype(np.float32),
           "label": rng.integers(0, 10, size=batch_size).astype(np.int32)} for _ in range(num)]


def run_steps(config, devices, data):
  mesh = step_lib.create_mesh(devices)
  run, _ = run_builder.build_run(config, INFO, steps_per_epoch=10, mesh=mesh)
  state = run.state
  for batch in data:
    state, metrics = run.train_step(state, jax.device_put(batch, step_lib.batch_sharding(mesh)))
  return jax.device_get(state), jax.device_get(metrics)


@pytest.mark.slow
@pytest.mark.parametrize("method", ["ce", "kd", "dkd"])
def test_eight_devices_equal_one_device(tmp_path, method):
  assert jax.device_count() == 8
  config = kd_config(export_random_teacher(tmp_path / "teacher"), method)
  data = batches(3)
  state8, metrics8 = run_steps(config, jax.devices(), data)
  state1, metrics1 = run_steps(config, jax.devices()[:1], data)
  for a, b in zip(jax.tree.leaves(state8.params), jax.tree.leaves(state1.params)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
  for a, b in zip(jax.tree.leaves(state8.batch_stats), jax.tree.leaves(state1.batch_stats)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(metrics8["loss"], metrics1["loss"], rtol=1e-5)
  assert int(state8.step) == 3


@pytest.mark.parametrize("method", ["kd", "dkd"])
def test_frozen_teacher_is_bit_identical_and_student_moves(tmp_path, method):
  config = kd_config(export_random_teacher(tmp_path / "teacher"), method)
  mesh = step_lib.create_mesh()
  run, _ = run_builder.build_run(config, INFO, steps_per_epoch=10, mesh=mesh)
  before = jax.device_get(run.state)
  state = run.state
  for batch in batches(3):
    state, _ = run.train_step(state, jax.device_put(batch, step_lib.batch_sharding(mesh)))
  after = jax.device_get(state)
  for key in ("params", "batch_stats"):
    teacher_before = jax.tree.leaves(getattr(before, key)["teachers"])
    teacher_after = jax.tree.leaves(getattr(after, key)["teachers"])
    assert teacher_before and all(np.array_equal(a, b) for a, b in zip(teacher_before, teacher_after))
  moved = [not np.array_equal(a, b) for a, b in
           zip(jax.tree.leaves(before.params["student"]), jax.tree.leaves(after.params["student"]))]
  assert all(moved)
  assert after.teacher_opt_state == before.teacher_opt_state


def test_a_method_trains_its_teachers_its_own_way_through_the_same_step(tmp_path):
  """`trainable` and `apply_gradients` are the whole main update: KD whose teacher halves
  each step moves its teacher so, and its student exactly as KD's own step does."""
  config = kd_config(export_random_teacher(tmp_path / "teacher"))
  mesh = step_lib.create_mesh()
  run, _ = run_builder.build_run(config, INFO, steps_per_epoch=10, mesh=mesh)

  class HalvingTeacher(type(run.method)):
    def trainable(self, params):
      return dict(super().trainable(params), teachers=params["teachers"])

    def apply_gradients(self, state, grads, batch_stats, optimizers):
      state = super().apply_gradients(state, grads, batch_stats, optimizers)
      teachers = jax.tree.map(lambda w: w / 2, state.params["teachers"])
      return state.replace(params=dict(state.params, teachers=teachers))

  optimizers = base.Optimizers(
      student=optim.create_optimizer(config.optimizer, 10, config.num_epochs),
      teacher=optax.set_to_zero())
  halving_step = step_lib.make_train_step(
      HalvingTeacher(run.method.hparams, run.method.run_info), run.nets, optimizers,
      optim.learning_rate_schedule(config.optimizer, 10, config.num_epochs), 10, mesh)
  before = jax.device_get(run.state)
  batch = jax.device_put(batches(1)[0], step_lib.batch_sharding(mesh))
  kd, _ = run.train_step(jax.device_put(before, step_lib.replicated_sharding(mesh)), batch)
  halved, _ = halving_step(jax.device_put(before, step_lib.replicated_sharding(mesh)), batch)
  kd, halved = jax.device_get((kd, halved))
  for a, b in zip(jax.tree.leaves(kd.params["student"]),
                  jax.tree.leaves(halved.params["student"])):
    np.testing.assert_array_equal(a, b)
  for a, b in zip(jax.tree.leaves(before.params["teachers"]),
                  jax.tree.leaves(halved.params["teachers"])):
    np.testing.assert_array_equal(a / 2, b)


def test_learning_rate_and_loss_metrics(tmp_path):
  config = kd_config(export_random_teacher(tmp_path / "teacher"))
  _, metrics = run_steps(config, jax.devices(), batches(1))
  assert metrics["learning_rate"] == pytest.approx(0.05)
  expected = 0.1 * metrics["loss/ce"] + 0.9 * metrics["loss/kd"]
  assert metrics["loss"] == pytest.approx(expected, rel=1e-6)
  assert 0.0 <= metrics["teacher/train_accuracy"] <= 1.0


def test_non_finite_loss_leaves_state_unchanged(tmp_path):
  config = kd_config(export_random_teacher(tmp_path / "teacher"))
  mesh = step_lib.create_mesh()
  run, _ = run_builder.build_run(config, INFO, steps_per_epoch=10, mesh=mesh)
  before = jax.device_get(run.state)
  bad = batches(1)[0]
  bad["image"][0, 0, 0, 0] = np.nan
  state, metrics = run.train_step(run.state, jax.device_put(bad, step_lib.batch_sharding(mesh)))
  assert np.isnan(metrics["loss"])
  for a, b in zip(jax.tree.leaves(before), jax.tree.leaves(jax.device_get(state))):
    np.testing.assert_array_equal(a, b)


def test_teacher_checkpoint_of_another_architecture_is_refused(tmp_path):
  config = kd_config(export_random_teacher(tmp_path / "teacher", model_name="cnn_small"))
  with pytest.raises(ValueError, match="holds a 'cnn_small' model, but the config names 'cnn_large'"):
    run_builder.build_run(config, INFO, 10, step_lib.create_mesh())


def test_student_checkpoint_of_another_architecture_names_the_student_flags(tmp_path):
  config = kd_config(export_random_teacher(tmp_path / "teacher"))
  config.student_checkpoint = export_random_teacher(tmp_path / "student", model_name="cnn_large")
  with pytest.raises(ValueError, match=r"^student checkpoint '.*' holds a 'cnn_large' model, but "
                                       r"the config names 'cnn_small': fix "
                                       r"--config.student_model or --config.student_checkpoint$"):
    run_builder.build_run(config, INFO, 10, step_lib.create_mesh())


def test_teacher_checkpoint_with_other_classes_is_refused(tmp_path):
  config = kd_config(export_random_teacher(tmp_path / "teacher", num_classes=7))
  with pytest.raises(ValueError, match=r"does not match model 'cnn_large'.*classifier.*shape"):
    run_builder.build_run(config, INFO, 10, step_lib.create_mesh())


def test_missing_teacher_checkpoint_says_how_to_make_one(tmp_path):
  config = kd_config(str(tmp_path / "nowhere"))
  with pytest.raises(FileNotFoundError, match="method=ce"):
    run_builder.build_run(config, INFO, 10, step_lib.create_mesh())
