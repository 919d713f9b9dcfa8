"""Tests of the model zoo: exact parameter counts, shapes, the head identity, BN modes, init."""

import functools
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxkd.models import create_model, feature_feeds_classifier, model_names
from jaxkd.models.common import channel_shuffle

# sum(p.numel() for p in model.parameters()) of the PyTorch reference definitions
# (RepDistiller / mdistiller / SimKD for CIFAR with 100 classes, torchvision for ImageNet with
# 1000 classes, the equivalent PyTorch conv-BN-ReLU stack for the digits CNNs with 10 classes).
EXPECTED_PARAMS = {
    "resnet8": 83_892,
    "resnet14": 181_108,
    "resnet20": 278_324,
    "resnet32": 472_756,
    "resnet38": 569_972,
    "resnet44": 667_188,
    "resnet56": 861_620,
    "resnet110": 1_736_564,
    "resnet38x2": 2_255_604,
    "resnet110x2": 6_911_220,
    "resnet8x4": 1_233_540,
    "resnet32x4": 7_433_860,
    "wrn_16_1": 180_916,
    "wrn_16_2": 703_284,
    "wrn_40_1": 569_780,
    "wrn_40_2": 2_255_156,
    "vgg8": 3_965_028,
    "vgg11": 9_277_284,
    "vgg13": 9_462_180,
    "vgg16": 14_774_436,
    "vgg19": 20_086_692,
    "MobileNetV2": 812_836,
    "MobileNetV2_1_0": 2_353_060,
    "ShuffleV1": 949_258,
    "ShuffleV2": 1_355_528,
    "ShuffleV2_1_5": 2_580_548,
    "ResNet18": 11_689_512,
    "ResNet34": 21_797_672,
    "ResNet50": 25_557_032,
    "ResNet18_cifar": 11_220_132,
    "ResNet50_cifar": 23_705_252,
    "cnn_small": 14_458,
    "cnn_large": 131_178,
}

IMAGENET_MODELS = ("ResNet18", "ResNet34", "ResNet50")
DIGITS_MODELS = ("cnn_small", "cnn_large")

# (height = width, channels) of the distillation feature, the reference's feat[-2], on the
# reference input of each family.
EXPECTED_FEATURE_MAP = {
    **{name: (8, 64) for name in ("resnet8", "resnet14", "resnet20", "resnet32", "resnet38",
                                  "resnet44", "resnet56", "resnet110", "wrn_40_1", "wrn_16_1")},
    "resnet38x2": (8, 128), "resnet110x2": (8, 128), "wrn_16_2": (8, 128), "wrn_40_2": (8, 128),
    "resnet8x4": (8, 256), "resnet32x4": (8, 256),
    **{name: (4, 512) for name in ("vgg8", "vgg11", "vgg13", "vgg16", "vgg19")},
    "MobileNetV2": (2, 160), "MobileNetV2_1_0": (2, 320),
    "ShuffleV1": (4, 960), "ShuffleV2": (4, 464), "ShuffleV2_1_5": (4, 704),
    "ResNet18": (7, 512), "ResNet34": (7, 512), "ResNet50": (7, 2048),
    "ResNet18_cifar": (4, 512), "ResNet50_cifar": (4, 2048),
    "cnn_small": (4, 32), "cnn_large": (2, 128),
}
# Classifier input channels of the models whose 1×1 conv head (conv2, bn2) follows the feature;
# every other model's classifier reads the feature's channels.
HEAD_CHANNELS = {"MobileNetV2": 1280, "MobileNetV2_1_0": 1280, "ShuffleV2": 1024,
                 "ShuffleV2_1_5": 1024}


def _setup(name: str) -> tuple[int, tuple[int, ...]]:
  """(num_classes, input shape) of the reference setting of model `name`."""
  if name in IMAGENET_MODELS:
    return 1000, (2, 224, 224, 3)
  if name in DIGITS_MODELS:
    return 10, (2, 8, 8, 1)
  return 100, (2, 32, 32, 3)


def _key(seed: int) -> jax.Array:
  """An RBG key: on XLA:CPU it compiles much faster than threefry for whole-model inits."""
  return jax.random.key(seed, impl="rbg")


@functools.lru_cache(maxsize=None)
def _run(name: str) -> dict[str, Any]:
  """Init, a train-mode and an eval-mode forward, compiled as one program (XLA:CPU is slow)."""
  num_classes, shape = _setup(name)
  model = create_model(name, num_classes)
  x = jax.random.normal(jax.random.key(1), shape)

  @jax.jit
  def run(key):
    variables = model.init(key, x, train=False)
    (feature_map, logits), updates = model.apply(variables, x, train=True, mutable=["batch_stats"])
    feature_map_eval, logits_eval = model.apply(variables, x, train=False)
    return dict(variables=variables, batch_stats=updates["batch_stats"], feature_map=feature_map,
                logits=logits, feature_map_eval=feature_map_eval, logits_eval=logits_eval)

  return dict(jax.device_get(run(_key(0))), x=np.asarray(x))


def _init_params(name: str, *path: str) -> dict[str, np.ndarray]:
  """The initial params under `path`; jit drops the unused forward, so this compiles quickly."""
  num_classes, shape = _setup(name)
  model = create_model(name, num_classes)
  init = functools.partial(model.init, train=False)

  @jax.jit
  def subtree(key):
    params = init(key, jnp.zeros((1, *shape[1:])))["params"]
    return functools.reduce(lambda tree, key: tree[key], path, params)

  return jax.device_get(subtree(_key(0)))


def test_registry_holds_exactly_the_zoo():
  assert set(model_names()) == set(EXPECTED_PARAMS)
  assert model_names() == sorted(model_names())


@pytest.mark.parametrize("name", sorted(EXPECTED_PARAMS))
def test_param_count_and_shapes(name):
  num_classes, shape = _setup(name)
  model = create_model(name, num_classes)
  (feature_map, logits), variables = jax.eval_shape(
      functools.partial(model.init_with_output, train=False), jax.random.key(0),
      jax.ShapeDtypeStruct(shape, jnp.float32))
  params = variables["params"]
  assert sum(leaf.size for leaf in jax.tree.leaves(params)) == EXPECTED_PARAMS[name]
  assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(params))
  size, channels = EXPECTED_FEATURE_MAP[name]
  assert feature_map.shape == (shape[0], size, size, channels)
  assert logits.shape == (shape[0], num_classes) and logits.dtype == jnp.float32
  assert params["classifier"]["kernel"].shape == (HEAD_CHANNELS.get(name, channels), num_classes)
  assert feature_feeds_classifier(name) == (name not in HEAD_CHANNELS)
  assert params["classifier"]["bias"].shape == (num_classes,)
  assert set(variables) == {"params", "batch_stats"}


def test_unknown_name_lists_valid_names():
  with pytest.raises(ValueError, match="resnet8x4") as error:
    create_model("resnet9000", 10)
  assert "resnet9000" in str(error.value) and "ShuffleV2" in str(error.value)


def test_conv_impl_is_passed_to_the_convolutions():
  model = create_model("cnn_small", 10, conv_impl="no_such_impl")
  with pytest.raises(ValueError, match="conv_impl"):
    model.init(jax.random.key(0), jnp.zeros((1, 8, 8, 1)), train=False)


FORWARD_MODELS = ("cnn_small", "resnet8", "ShuffleV1")


@pytest.mark.parametrize("name", FORWARD_MODELS)
def test_forward_train_and_eval(name):
  out = _run(name)
  assert np.all(np.isfinite(out["logits"])) and np.all(np.isfinite(out["logits_eval"]))
  assert np.all(out["feature_map"] >= 0) and np.all(out["feature_map_eval"] >= 0)
  # Training updates every running statistic; eval mode (running averages) gives other logits.
  changed = jax.tree.map(lambda old, new: bool(np.any(old != new)),
                         out["variables"]["batch_stats"], out["batch_stats"])
  assert jax.tree.leaves(changed) and all(jax.tree.leaves(changed))
  assert not np.allclose(out["logits_eval"], out["logits"], atol=1e-4)


def test_train_mode_batch_statistics_of_first_layer():
  out = _run("cnn_small")
  kernel = out["variables"]["params"]["conv0"]["kernel"]  # (3, 3, 1, 16)
  padded = np.pad(out["x"].astype(np.float64), ((0, 0), (1, 1), (1, 1), (0, 0)))
  conv = sum(padded[:, i:i + 8, j:j + 8, :] @ kernel[i, j] for i in range(3) for j in range(3))
  # PyTorch momentum 0.1 from mean 0, var 1; Flax keeps the biased batch variance.
  stats = out["batch_stats"]["bn0"]
  np.testing.assert_allclose(stats["mean"], 0.1 * conv.mean(axis=(0, 1, 2)), rtol=1e-4, atol=1e-6)
  np.testing.assert_allclose(stats["var"], 0.9 + 0.1 * conv.var(axis=(0, 1, 2)), rtol=1e-4)


@pytest.mark.parametrize("name", ["cnn_small", "resnet8", "ShuffleV1"])
@pytest.mark.parametrize("mode", ["", "_eval"])
def test_logits_are_classifier_of_pooled_feature_map(name, mode):
  out = _run(name)
  classifier = out["variables"]["params"]["classifier"]
  pooled = np.asarray(out["feature_map" + mode], np.float64).mean(axis=(1, 2))
  expected = pooled @ np.asarray(classifier["kernel"], np.float64) + classifier["bias"]
  np.testing.assert_allclose(out["logits" + mode], expected, rtol=1e-5, atol=1e-5)


def test_bfloat16_compute_keeps_float32_params_and_logits():
  model_bf16 = create_model("cnn_small", 10, dtype=jnp.bfloat16)
  model_f32 = create_model("cnn_small", 10)
  x = jax.random.normal(jax.random.key(1), (2, 8, 8, 1))

  @jax.jit
  def run(key):
    variables = model_bf16.init(key, x, train=False)
    return variables, model_bf16.apply(variables, x, train=False), model_f32.apply(
        variables, x, train=False)

  variables, (feature_map, logits), (_, logits_f32) = run(_key(0))
  assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(variables))
  assert feature_map.dtype == jnp.bfloat16 and logits.dtype == jnp.float32
  np.testing.assert_allclose(logits, logits_f32, atol=0.05)
  assert not np.array_equal(logits, logits_f32)


def test_init_matches_reference_distributions():
  block = _init_params("resnet8x4", "layer3_0")
  # kaiming_normal_(mode='fan_out'): std = sqrt(2 / (3·3·256)) for a 256 → 256 3×3 conv.
  kernel = block["conv2"]["kernel"]
  assert kernel.shape == (3, 3, 256, 256)
  assert abs(kernel.std() / math.sqrt(2 / (9 * 256)) - 1) < 0.02 and abs(kernel.mean()) < 1e-3
  np.testing.assert_array_equal(block["bn2"]["scale"], 1.0)
  np.testing.assert_array_equal(block["bn2"]["bias"], 0.0)
  # PyTorch's default Linear: weight and bias U(±1/sqrt(fan_in)); its std is bound/sqrt(3).
  classifier = _init_params("resnet8x4", "classifier")
  bound = 1 / math.sqrt(256)
  for leaf in (classifier["kernel"], classifier["bias"]):
    assert bound >= np.abs(leaf).max() > 0.9 * bound
  assert abs(classifier["kernel"].std() / (bound / math.sqrt(3)) - 1) < 0.05


@pytest.mark.parametrize("name, channels", [
    ("MobileNetV2", 160), ("MobileNetV2_1_0", 320), ("ShuffleV2", 464), ("ShuffleV2_1_5", 704),
    ("resnet8x4", 256), ("wrn_40_2", 128)])
def test_distillation_feature_channels(name, channels):
  """The reference's feat[-2]: the last block or stage (before MobileNetV2's, ShuffleV2's head)."""
  model = create_model(name, 100)
  image = jax.ShapeDtypeStruct((2, 32, 32, 3), jnp.float32)
  (feature, _), _ = jax.eval_shape(functools.partial(model.init_with_output, train=False),
                                   jax.random.key(0), image)
  assert feature.shape[-1] == channels


# The module whose output is the distillation feature, for the models with a head after it.
LAST_BLOCK = {"MobileNetV2": "blocks6_0", "ShuffleV2": "layer3_2"}


@pytest.mark.parametrize("name", sorted(LAST_BLOCK))
def test_feature_is_last_block_output_and_logits_come_from_the_head(name):
  model = create_model(name, 100, conv_impl="xla")
  x = jax.random.normal(jax.random.key(1), (2, 32, 32, 3))
  captured = lambda module, _: module.name in (LAST_BLOCK[name], "bn2")

  @jax.jit
  def run(key):
    variables = model.init(key, x, train=False)
    outputs, state = model.apply(variables, x, train=False, capture_intermediates=captured,
                                 mutable=["intermediates"])
    return variables["params"]["classifier"], outputs, state["intermediates"]

  classifier, (feature, logits), intermediates = jax.device_get(run(_key(0)))
  (block_output,) = intermediates[LAST_BLOCK[name]]["__call__"]
  np.testing.assert_array_equal(feature, block_output)
  (head,) = intermediates["bn2"]["__call__"]
  pooled = np.maximum(np.asarray(head, np.float64), 0).mean(axis=(1, 2))
  expected = pooled @ np.asarray(classifier["kernel"], np.float64) + classifier["bias"]
  np.testing.assert_allclose(logits, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["vgg8", "MobileNetV2"])
def test_vgg_and_mobilenet_classifier_init(name):
  classifier = _init_params(name, "classifier")
  assert abs(classifier["kernel"].std() / 0.01 - 1) < 0.05
  np.testing.assert_array_equal(classifier["bias"], 0.0)


def test_channel_shuffle_matches_index_formula():
  groups, per_group = 3, 4
  x = jnp.arange(2 * 5 * groups * per_group, dtype=jnp.float32).reshape(2, 1, 5, groups * per_group)
  shuffled = np.asarray(channel_shuffle(x, groups))
  for g in range(groups):
    for j in range(per_group):
      # Output channel j·G + g takes input channel g·(C/G) + j (PyTorch view/permute/reshape).
      np.testing.assert_array_equal(shuffled[..., j * groups + g],
                                    np.asarray(x)[..., g * per_group + j])
