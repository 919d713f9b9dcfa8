"""SimKD: pooling, projector and feature loss against NumPy; a frozen teacher; the shared head.

Also the end-to-end learning check of both shared-classifier methods (SimKD and ATSC) on the
real digits data, since they share the trainer path.
"""

import math
import os
import types

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest

from jaxkd import config_schema, config_validation, methods, models, recipes, run_builder, train
from jaxkd import step as step_lib
from jaxkd.methods import atsc, base, projector, simkd

from tests.methods.conftest import TEACHER_MODEL
from tests.random_teachers import INFO, export_random_teacher, random_batch
TOL = dict(rtol=1e-5, atol=1e-5)


def numpy_adaptive_pool(x: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
  """PyTorch's adaptive_avg_pool2d on NHWC, window by window."""
  x = np.asarray(x, np.float64)
  batch, height, width, channels = x.shape
  out = np.zeros((batch, out_h, out_w, channels))
  for i in range(out_h):
    h0, h1 = math.floor(i * height / out_h), math.ceil((i + 1) * height / out_h)
    for j in range(out_w):
      w0, w1 = math.floor(j * width / out_w), math.ceil((j + 1) * width / out_w)
      out[:, i, j] = x[:, h0:h1, w0:w1].mean(axis=(1, 2))
  return out


@pytest.mark.parametrize("in_size,out_size", [((5, 7), (3, 2)), ((4, 4), (2, 2)), ((6, 3), (4, 3))])
def test_adaptive_avg_pool_matches_pytorch_windows(in_size, out_size):
  x = np.random.default_rng(0).normal(size=(2, *in_size, 3)).astype(np.float32)
  got = projector.adaptive_avg_pool(jnp.asarray(x), out_size)
  np.testing.assert_allclose(got, numpy_adaptive_pool(x, *out_size), **TOL)


def test_projector_channels_kernels_and_relu_output():
  module = projector.Projector(out_channels=16, factor=2, conv_impl="xla")
  x = jnp.asarray(np.random.default_rng(1).normal(size=(4, 3, 3, 12)), jnp.float32)
  variables = module.init(jax.random.key(0), x, train=False)
  shapes = jax.tree.map(jnp.shape, variables["params"])
  assert shapes["conv0"] == {"kernel": (1, 1, 12, 8)}
  assert shapes["conv1"] == {"kernel": (3, 3, 8, 8)}
  assert shapes["conv2"] == {"kernel": (1, 1, 8, 16)}
  assert shapes["bn2"] == {"scale": (16,), "bias": (16,)}
  out, _ = module.apply(variables, x, train=True, mutable=["batch_stats"])
  assert out.shape == (4, 3, 3, 16)
  assert float(jnp.min(out)) == 0.0 and float(jnp.max(out)) > 0.0


def test_projectors_pool_the_larger_student_map_first():
  module = projector.TeacherProjectors(teacher_maps=((2, 2, 8), (5, 5, 6)), conv_impl="xla")
  x = np.random.default_rng(2).normal(size=(3, 5, 5, 4)).astype(np.float32)
  variables = module.init(jax.random.key(0), jnp.asarray(x), train=False)
  small, same = module.apply(variables, jnp.asarray(x), train=False)
  assert small.shape == (3, 2, 2, 8) and same.shape == (3, 5, 5, 6)
  inner = projector.Projector(out_channels=8, conv_impl="xla")
  expected = inner.apply({"params": variables["params"]["projector0"],
                          "batch_stats": variables["batch_stats"]["projector0"]},
                         jnp.asarray(numpy_adaptive_pool(x, 2, 2), jnp.float32), train=False)
  np.testing.assert_allclose(small, expected, **TOL)


def test_feature_loss_pools_the_larger_teacher_map():
  rng = np.random.default_rng(3)
  projected = rng.normal(size=(4, 2, 2, 5)).astype(np.float32)
  teacher_map = rng.normal(size=(4, 5, 5, 5)).astype(np.float32)
  (got,) = simkd.feature_losses([jnp.asarray(projected)], [jnp.asarray(teacher_map)])
  expected = np.mean((projected - numpy_adaptive_pool(teacher_map, 2, 2)) ** 2)
  assert float(got) == pytest.approx(expected, rel=1e-5)


def test_combine_logits_golden():
  rng = np.random.default_rng(4)
  a, b = rng.normal(size=(2, 3, 7)) * 3
  np.testing.assert_allclose(projector.combine_logits([a, b], "mean_logits"), (a + b) / 2, **TOL)
  softmax = lambda z: np.exp(z) / np.exp(z).sum(-1, keepdims=True)
  np.testing.assert_allclose(projector.combine_logits([a, b], "mean_probs"),
                             np.log((softmax(a) + softmax(b)) / 2), **TOL)
  with pytest.raises(ValueError, match="unknown combination"):
    projector.combine_logits([a], "max")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  """A simkd run (cnn_large ▶ cnn_small on 8×8) before and after three steps."""
  config = recipes.cifar_run("simkd", "cnn_small", "digits")
  config.teacher_model = "cnn_large"
  config.teacher_checkpoint = export_random_teacher(tmp_path_factory.mktemp("teacher"))
  config.batch_size = 16
  config.conv_impl = "xla"
  mesh = step_lib.create_mesh()
  run, _ = run_builder.build_run(config, INFO, steps_per_epoch=10, mesh=mesh)
  before = jax.device_get(run.state)
  state, all_metrics = run.state, []
  for seed in range(3):
    state, metrics = run.train_step(
        state, jax.device_put(random_batch(seed), step_lib.batch_sharding(mesh)))
    all_metrics.append(jax.device_get(metrics))
  return types.SimpleNamespace(run=run, before=before, after=jax.device_get(state),
                               metrics=all_metrics)


@pytest.mark.slow
def test_teacher_is_bit_identical_while_student_and_projector_move(trained):
  before, after = trained.before, trained.after
  for group in ("params", "batch_stats"):
    teacher_before = jax.tree.leaves(getattr(before, group)["teachers"])
    teacher_after = jax.tree.leaves(getattr(after, group)["teachers"])
    assert teacher_before and all(np.array_equal(a, b)
                                  for a, b in zip(teacher_before, teacher_after))
    for a, b in zip(jax.tree.leaves(getattr(before, group)["extra"]),
                    jax.tree.leaves(getattr(after, group)["extra"])):
      assert not np.array_equal(a, b)
  for name in ("conv0", "conv1", "conv2"):
    assert not np.array_equal(before.params["student"][name]["kernel"],
                              after.params["student"][name]["kernel"])


def test_first_step_loss_is_the_feature_mse_of_an_independent_forward(trained):
  before, nets = trained.before, trained.run.nets
  batch = random_batch(0)
  (student_map, _), _ = nets.student.apply(
      {"params": before.params["student"], "batch_stats": before.batch_stats["student"]},
      batch["image"], train=True, mutable=["batch_stats"])
  pooled = numpy_adaptive_pool(student_map, 2, 2)
  extra = before.params["extra"]["projector0"]
  projected, _ = projector.Projector(out_channels=128, conv_impl="xla").apply(
      {"params": extra, "batch_stats": before.batch_stats["extra"]["projector0"]},
      jnp.asarray(pooled, jnp.float32), train=True, mutable=["batch_stats"])
  (teacher_map, _) = nets.teachers[0].apply(
      {"params": before.params["teachers"][0], "batch_stats": before.batch_stats["teachers"][0]},
      batch["image"], train=False)
  expected = np.mean((np.asarray(projected, np.float64) - np.asarray(teacher_map)) ** 2)
  metrics = trained.metrics[0]
  assert metrics["loss"] == pytest.approx(expected, rel=1e-4)
  assert metrics["loss/feature"] == metrics["loss"]  # b = 1, c = d = 0.


def test_predict_is_the_teacher_classifier_on_the_projected_map(trained):
  after, run = trained.after, trained.run
  images = random_batch(7)["image"]
  logits = run.method.predict(run.nets, after.params, after.batch_stats, jnp.asarray(images))
  (student_map, own_logits) = run.nets.student.apply(
      {"params": after.params["student"], "batch_stats": after.batch_stats["student"]},
      images, train=False)
  projected = projector.Projector(out_channels=128, conv_impl="xla").apply(
      {"params": after.params["extra"]["projector0"],
       "batch_stats": after.batch_stats["extra"]["projector0"]},
      jnp.asarray(numpy_adaptive_pool(student_map, 2, 2), jnp.float32), train=False)
  head = after.params["teachers"][0]["classifier"]
  expected = np.asarray(projected, np.float64).mean(axis=(1, 2)) @ head["kernel"] + head["bias"]
  np.testing.assert_allclose(logits, expected, rtol=1e-4, atol=1e-4)
  assert not np.allclose(logits, own_logits, atol=1e-2)


def test_export_holds_student_projector_and_teacher_head(trained):
  exported = trained.run.method.export_variables(trained.after)
  head = trained.after.params["teachers"][0]["classifier"]
  assert set(exported["params"]) == {"student", "projectors", "teacher_heads"}
  np.testing.assert_array_equal(exported["params"]["teacher_heads"][0]["kernel"], head["kernel"])
  assert exported["batch_stats"]["projectors"] is trained.after.batch_stats["extra"]


def test_simkd_takes_one_teacher_and_an_integer_factor():
  config = recipes.cifar_run("simkd", "cnn_small", "digits")
  config.teacher_model = "cnn_large,cnn_small"
  with pytest.raises(ValueError, match="takes one teacher"):
    methods.create_method(config).validate()
  config.teacher_model = "cnn_large"
  config.simkd.factor = 0
  with pytest.raises(ValueError, match="factor must be an integer"):
    methods.create_method(config).validate()


def test_projector_of_a_mobilenet_student_takes_its_last_block_160_channels():
  config = recipes.cifar_run("simkd", "MobileNetV2")
  config.teacher_model = "resnet8x4"
  nets = base.Networks(student=models.create_model("MobileNetV2", 100, conv_impl="xla"),
                       teachers=(models.create_model("resnet8x4", 100, conv_impl="xla"),))
  image = jax.ShapeDtypeStruct((2, 32, 32, 3), jnp.float32)
  outputs = lambda model: jax.eval_shape(
      lambda x: model.init_with_output(jax.random.key(0), x, train=False), image)[0]
  shapes = base.ShapeInfo(student=outputs(nets.student), teachers=(outputs(nets.teachers[0]),))
  assert shapes.student[0].shape == (2, 2, 2, 160)
  _, params, _ = methods.create_method(config).init_extra(jax.random.key(1), nets, shapes)
  assert params["projector0"]["conv0"]["kernel"].shape == (1, 1, 160, 128)  # C_t / factor.
  assert params["projector0"]["conv2"]["kernel"].shape == (1, 1, 128, 256)  # C_t.


@pytest.mark.parametrize("method, teachers", [
    ("simkd", "MobileNetV2"), ("simkd", "ShuffleV2_1_5"), ("atsc", "ShuffleV2"),
    ("atsc", "resnet32x4,MobileNetV2_1_0")])
def test_a_teacher_with_a_head_conv_after_its_feature_is_refused(method, teachers):
  config = recipes.cifar_run(method, "resnet8x4")
  config.teacher_model, config.teacher_checkpoint = "resnet32x4", "/t"
  config_validation.validate(config)  # A ResNet's classifier pools its feature.
  config.teacher_model = teachers
  config.teacher_checkpoint = ",".join("/t" for _ in teachers.split(","))
  refused = teachers.split(",")[-1]
  with pytest.raises(ValueError, match=f"teacher '{refused}' cannot share its classifier in "
                     f"{method}: .* choose a teacher whose classifier pools its feature"):
    config_validation.validate(config)


def digits_run(method, model):
  """Two epochs (44 steps of 64) on digits at a constant lr 0.05."""
  config = recipes.cifar_run(method, model, "digits")
  config.num_epochs = 2
  config.optimizer = config_schema.sgd_config(learning_rate=0.05, decay_epochs=())
  config.log_every_steps = 22
  config.eval_every_epochs = 2
  return config


def exported(workdir):
  return ocp.StandardCheckpointer().restore(os.path.join(workdir, "export", "variables"))


@pytest.mark.slow
def test_simkd_and_atsc_students_learn_on_digits(digits_teacher_workdir, tmp_path):
  teacher_bias = exported(digits_teacher_workdir)["params"]["classifier"]["bias"]
  for method in ("simkd", "atsc"):
    config = digits_run(method, "cnn_small")
    config.teacher_model, config.teacher_checkpoint = TEACHER_MODEL, digits_teacher_workdir
    if method == "atsc":
      atsc.share_student_optimizer(config)
    summary = train.train_and_evaluate(config, str(tmp_path / method))
    assert summary["final_test_accuracy"] > 0.7, method
    head = exported(str(tmp_path / method))["params"]["teacher_heads"][0]
    assert np.array_equal(head["bias"], teacher_bias) == (method == "simkd")
