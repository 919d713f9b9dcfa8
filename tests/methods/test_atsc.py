"""ATSC: one step against the closed-form updates of docs/methods.md §6; several teachers; configs.

Tiny models on 8×8 inputs: teacher cnn_large (feature map 2×2×128), student cnn_small (4×4×32).
SGD with lr 0.05, momentum 0.9, weight decay 5e-4; on the first step the momentum buffers are
empty, so every parameter moves by −lr·(∂L/∂W + wd·W).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxkd import config_schema, config_validation, methods, pipeline, recipes, run_builder
from jaxkd import step as step_lib
from jaxkd.methods import atsc, projector

from tests.config_files import load_config
from tests.random_teachers import INFO, export_random_teacher, random_batch
LR, WD = 0.05, 5e-4


def build(tmp_path_factory, teachers=("cnn_large",), **hparams):
  """An atsc run (student cnn_small) and its initial state on the host."""
  config = atsc.share_student_optimizer(recipes.cifar_run("atsc", "cnn_small", "digits"))
  config.teacher_model = ",".join(teachers)
  config.teacher_checkpoint = ",".join(
      export_random_teacher(tmp_path_factory.mktemp("teacher"), name, seed)
      for seed, name in enumerate(teachers, start=1))
  config.batch_size = 16
  config.conv_impl = "xla"
  config.atsc.update(hparams)
  config_validation.validate(config)
  mesh = step_lib.create_mesh()
  run, _ = run_builder.build_run(config, INFO, steps_per_epoch=10, mesh=mesh)
  return run, mesh, jax.device_get(run.state)


def one_step(run, mesh, host_state, batch):
  state = jax.device_put(host_state, step_lib.replicated_sharding(mesh))
  state, metrics = run.train_step(state, jax.device_put(batch, step_lib.batch_sharding(mesh)))
  return jax.device_get(state), jax.device_get(metrics)


def expected_head(module, teacher_params, batch_stats, batch, update_kernel):
  """The head update in closed form, from the teacher after the main update.

  z = GAP(f_t)·W + b (train mode); g = (softmax(z) − onehot(y)) / B; ∂CE/∂b = Σ_i g_i,
  ∂CE/∂W = GAP(f_t)ᵀ g; each trained entry moves by −lr·(∂CE + wd·entry).
  """
  (feature_map, _), _ = module.apply({"params": teacher_params, "batch_stats": batch_stats},
                                     batch["image"], train=True, mutable=["batch_stats"])
  pooled = np.asarray(feature_map, np.float64).mean(axis=(1, 2))
  kernel = np.asarray(teacher_params["classifier"]["kernel"], np.float64)
  bias = np.asarray(teacher_params["classifier"]["bias"], np.float64)
  logits = pooled @ kernel + bias
  probs = np.exp(logits - logits.max(-1, keepdims=True))
  probs /= probs.sum(-1, keepdims=True)
  g = (probs - np.eye(INFO.num_classes)[batch["label"]]) / len(batch["label"])
  new_bias = bias - LR * (g.sum(0) + WD * bias)
  new_kernel = kernel - LR * (pooled.T @ g + WD * kernel) if update_kernel else kernel
  return new_kernel, new_bias


@pytest.fixture(scope="module")
def bias_run(tmp_path_factory):
  return build(tmp_path_factory)


def test_one_step_moves_the_teacher_and_updates_its_bias_by_the_head_ce(bias_run):
  run, mesh, before = bias_run
  batch = random_batch(0)
  after, metrics = one_step(run, mesh, before, batch)
  t0, t1 = before.params["teachers"][0], after.params["teachers"][0]
  for name in ("conv0", "conv1", "conv2", "conv3"):
    assert not np.array_equal(t0[name]["kernel"], t1[name]["kernel"])
  for a, b in zip(jax.tree.leaves(before.batch_stats["teachers"]),
                  jax.tree.leaves(after.batch_stats["teachers"])):
    assert not np.array_equal(a, b)
  # W_T: no loss gradient (and no anchor pull at W = W⁰), so weight decay alone.
  w0 = t0["classifier"]["kernel"]
  np.testing.assert_allclose(t1["classifier"]["kernel"], w0 - LR * WD * w0, rtol=1e-6, atol=1e-9)
  # b_T: weight decay in the main update, then one head-CE step of its own optimizer.
  main_updated = dict(t1, classifier={"kernel": t1["classifier"]["kernel"],
                                      "bias": t0["classifier"]["bias"] * (1 - LR * WD)})
  _, bias = expected_head(run.nets.teachers[0], main_updated, before.batch_stats["teachers"][0],
                          batch, update_kernel=False)
  np.testing.assert_allclose(t1["classifier"]["bias"], bias, rtol=1e-5, atol=1e-6)
  assert metrics["loss/anchor"] == 0.0
  assert metrics["loss"] == pytest.approx(metrics["loss/feature"], rel=1e-6)


def test_teacher_batch_stats_update_in_both_forwards(bias_run):
  run, mesh, before = bias_run
  batch = random_batch(1)
  after, _ = one_step(run, mesh, before, batch)
  teacher = run.nets.teachers[0]
  _, first = teacher.apply({"params": before.params["teachers"][0],
                            "batch_stats": before.batch_stats["teachers"][0]},
                           batch["image"], train=True, mutable=["batch_stats"])
  _, second = teacher.apply({"params": after.params["teachers"][0],
                             "batch_stats": first["batch_stats"]},
                            batch["image"], train=True, mutable=["batch_stats"])
  for got, expected in zip(jax.tree.leaves(after.batch_stats["teachers"][0]),
                           jax.tree.leaves(second["batch_stats"])):
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_anchor_pulls_displaced_teacher_weights_back(bias_run):
  run, mesh, before = bias_run
  rng = np.random.default_rng(5)
  anchor = before.method_state["anchor"][0]
  offsets = jax.tree.map(lambda w: 0.05 * rng.normal(size=w.shape).astype(np.float32)
                         if w.ndim >= 2 else np.zeros_like(w), anchor)
  displaced_teacher = jax.tree.map(np.add, before.params["teachers"][0], offsets)
  displaced = before.replace(params=dict(before.params, teachers=(displaced_teacher,)))
  after, metrics = one_step(run, mesh, displaced, random_batch(2))
  expected_anchor = sum(float(np.sum(np.square(o))) for o in jax.tree.leaves(offsets))
  assert metrics["loss/anchor"] == pytest.approx(expected_anchor, rel=1e-5)
  # W_T: W − lr·(wd·W + 2w(W − W⁰)), w = 1: the loss itself sends no gradient into it.
  w, w0 = displaced_teacher["classifier"]["kernel"], anchor["classifier"]["kernel"]
  np.testing.assert_allclose(after.params["teachers"][0]["classifier"]["kernel"],
                             w - LR * (WD * w + 2.0 * (w - w0)), rtol=1e-5, atol=1e-7)
  for name in ("conv0", "conv1", "conv2", "conv3"):
    moved = after.params["teachers"][0][name]["kernel"] - anchor[name]["kernel"]
    ratio = np.linalg.norm(moved) / np.linalg.norm(offsets[name]["kernel"])
    assert 0.85 < ratio < 0.95  # (1 − 2·lr·w) = 0.9, give or take the feature gradient.


def test_weight_and_bias_head_update_moves_the_kernel_by_its_ce(tmp_path_factory):
  run, mesh, before = build(tmp_path_factory, teacher_head_params="weight_and_bias")
  batch = random_batch(3)
  after, _ = one_step(run, mesh, before, batch)
  t0, t1 = before.params["teachers"][0], after.params["teachers"][0]
  main_updated = dict(t1, classifier=jax.tree.map(lambda x: x * (1 - LR * WD), t0["classifier"]))
  kernel, bias = expected_head(run.nets.teachers[0], main_updated,
                               before.batch_stats["teachers"][0], batch, update_kernel=True)
  np.testing.assert_allclose(t1["classifier"]["kernel"], kernel, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(t1["classifier"]["bias"], bias, rtol=1e-5, atol=1e-6)
  assert not np.allclose(t1["classifier"]["kernel"], t0["classifier"]["kernel"] * (1 - LR * WD),
                         rtol=0, atol=1e-6)


@pytest.mark.slow
def test_two_teachers_train_and_predict_combines_their_heads(tmp_path_factory):
  run, mesh, before = build(tmp_path_factory, teachers=("cnn_large", "cnn_small"),
                            combine="mean_probs")
  after, metrics = one_step(run, mesh, before, random_batch(4))
  assert set(after.params["extra"]) == {"projector0", "projector1"}
  assert after.params["extra"]["projector1"]["conv2"]["kernel"].shape == (1, 1, 16, 32)
  for t0, t1 in zip(before.params["teachers"], after.params["teachers"]):
    assert not np.array_equal(t0["conv0"]["kernel"], t1["conv0"]["kernel"])
    assert not np.array_equal(t0["classifier"]["bias"], t1["classifier"]["bias"])
  assert np.isfinite(metrics["loss"])

  images = random_batch(5)["image"]
  student_map, _ = run.nets.student.apply(
      {"params": after.params["student"], "batch_stats": after.batch_stats["student"]},
      images, train=False)
  heads = []
  for index, (channels, size) in enumerate(((128, 2), (32, 4))):
    projected = projector.Projector(channels, conv_impl="xla").apply(
        {"params": after.params["extra"][f"projector{index}"],
         "batch_stats": after.batch_stats["extra"][f"projector{index}"]},
        projector.adaptive_avg_pool(student_map, (size, size)), train=False)
    head = after.params["teachers"][index]["classifier"]
    heads.append(np.asarray(projected, np.float64).mean(axis=(1, 2)) @ head["kernel"]
                 + head["bias"])
  probs = [np.exp(h) / np.exp(h).sum(-1, keepdims=True) for h in heads]
  got = run.method.predict(run.nets, after.params, after.batch_stats, jnp.asarray(images))
  np.testing.assert_allclose(got, np.log((probs[0] + probs[1]) / 2), rtol=1e-4, atol=1e-4)
  hparams = run.method.hparams.copy_and_resolve_references()
  hparams.combine = "mean_logits"
  mean_logits = atsc.ATSC(hparams, run.method.run_info)
  got = mean_logits.predict(run.nets, after.params, after.batch_stats, jnp.asarray(images))
  np.testing.assert_allclose(got, (heads[0] + heads[1]) / 2, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("field,value,message", [
    ("teacher_head_params", "kernel", "teacher_head_params must be one of bias, weight_and_bias"),
    ("combine", "max", "combine must be one of mean_logits, mean_probs"),
    ("anchor_weight", -1.0, "anchor_weight must be ≥ 0"),
])
def test_bad_settings_are_refused(field, value, message):
  config = recipes.cifar_run("atsc", "cnn_small", "digits")
  config.teacher_model, config.teacher_checkpoint = "cnn_large", "/nowhere"
  config.atsc[field] = value
  with pytest.raises(ValueError, match=message):
    methods.create_method(config).validate()


def test_atsc_cifar100_config_is_the_readme_command():
  config = load_config("atsc_cifar100")
  assert config.stage_order == ("teacher", "student")
  teacher, student = config.stages.teacher, config.stages.student
  assert (teacher.method, teacher.student_model) == ("ce", "resnet32x4")
  assert (student.method, student.student_model, student.teacher_model) == (
      "atsc", "resnet8x4", "resnet32x4")
  assert student.teacher_checkpoint == "@teacher"
  hp = student.atsc
  assert (hp.feature_weight, hp.anchor_weight, hp.factor, hp.ce_weight, hp.kd_weight) == (
      1.0, 1.0, 2, 0.0, 0.0)
  assert hp.teacher_head_params == "bias"
  assert student.optimizer.learning_rate == 0.05 and student.optimizer.weight_decay == 5e-4
  assert tuple(student.optimizer.decay_epochs) == (150, 180, 210)
  assert (config.batch_size, config.num_epochs) == (64, 240)
  assert student.teacher_optimizer.to_dict() == student.optimizer.to_dict()
  student.student_model = "MobileNetV2"  # The recipe's small-student rate reaches both.
  assert student.optimizer.learning_rate == student.teacher_optimizer.learning_rate == 0.01
  student.student_model = "resnet8x4"
  assert student.optimizer.learning_rate == student.teacher_optimizer.learning_rate == 0.05
  student.optimizer.learning_rate = 0.02  # One optimizer in the reference code: both follow.
  assert student.teacher_optimizer.learning_rate == 0.02
  student.student_model = "ShuffleV2"  # An explicit rate wins over the rule.
  assert student.optimizer.learning_rate == student.teacher_optimizer.learning_rate == 0.02


def test_atsc_imagenet_config():
  student = load_config("atsc_imagenet").stages.student
  assert (student.student_model, student.teacher_model) == ("ResNet18", "ResNet50")
  assert student.atsc.anchor_weight == 10.0
  assert (student.batch_size, student.num_epochs) == (64, 120)
  opt = student.teacher_optimizer
  assert (opt.learning_rate, opt.weight_decay) == (0.01, 1e-4)
  assert tuple(opt.decay_epochs) == (30, 60, 90)


def test_atsc_multi_config_trains_each_teacher_as_its_own_stage():
  config = load_config("atsc_multi_cifar100")
  student = config.stages[config.stage_order[-1]]
  teachers = config_schema.split_names(student.teacher_model)
  assert len(teachers) >= 2
  assert student.teacher_checkpoint == ",".join(f"@t{i}" for i in range(len(teachers)))
  for i, name in enumerate(teachers):
    assert (config.stages[f"t{i}"].method, config.stages[f"t{i}"].student_model) == ("ce", name)


@pytest.mark.parametrize("name", ["simkd_cifar100", "atsc_cifar100", "atsc_multi_cifar100",
                                  "atsc_imagenet"])
def test_configs_validate_on_cifar10_jpeg(name, tmp_path):
  config = load_config(name)
  config.dataset = "cifar10_jpeg"
  for stage in pipeline.stages_to_run(config):
    resolved = pipeline.resolve_stage(config, stage, str(tmp_path))
    assert resolved.dataset == "cifar10_jpeg"
    config_validation.validate(resolved)
