"""Published PyTorch layouts: every architecture's PyTorch weights give PyTorch's logits in
jaxkd, and export ↔ import is exact and loads strictly into the PyTorch definition."""

import functools

import jax
import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="PyTorch is optional: pip install torch==2.13.0")

from benchmarks import torch_models  # pylint: disable=wrong-import-position
from jaxkd import import_torch, torch_layout  # pylint: disable=wrong-import-position
from tests.torch_io import random_torch  # pylint: disable=wrong-import-position

MAX_RELATIVE_ERROR = 1e-4
ARCHITECTURES = torch_layout.supported_models()


@functools.lru_cache(maxsize=None)
def _imported(name: str):
  """(random PyTorch model, its numpy state_dict, the jaxkd variables imported from it)."""
  model = random_torch.random_model(name)
  state_dict = random_torch.numpy_state_dict(model)
  like = import_torch.variables_template(name, random_torch.NUM_CLASSES)
  return model, state_dict, torch_layout.variables_from_torch_state_dict(name, state_dict, like)


def test_every_published_architecture_has_a_pytorch_definition():
  assert set(ARCHITECTURES) == set(torch_models.MODEL_NAMES)


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_imported_weights_give_pytorch_logits(name):
  model, _, variables = _imported(name)
  images = random_torch.random_images(name)
  expected = random_torch.torch_logits(model, images)
  error = random_torch.relative_error(random_torch.jaxkd_logits(name, variables, images), expected)
  assert error <= MAX_RELATIVE_ERROR, f"{name}: relative logits error {error:.2e}"
  jax_parameters = sum(leaf.size for leaf in jax.tree.leaves(variables["params"]))
  assert torch_models.parameter_count(model) == jax_parameters


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_export_and_import_are_exact_and_load_strictly(name):
  model, state_dict, variables = _imported(name)
  exported = torch_layout.torch_state_dict_from_variables(name, variables)
  assert set(exported) == set(state_dict)
  for key, value in exported.items():
    if key.endswith(torch_layout.NUM_BATCHES_TRACKED):
      assert value.shape == () and value.dtype == np.int64
    else:
      assert value.dtype == state_dict[key].dtype and np.array_equal(value, state_dict[key]), key
  fresh = torch_models.create_model(name, random_torch.NUM_CLASSES)
  fresh.load_state_dict({key: torch.from_numpy(value) for key, value in exported.items()},
                        strict=True)
  reimported = torch_layout.variables_from_torch_state_dict(name, exported, variables)
  assert jax.tree.structure(reimported) == jax.tree.structure(variables)
  for again, first in zip(jax.tree.leaves(reimported), jax.tree.leaves(variables)):
    assert again.dtype == first.dtype and np.array_equal(again, first)


def test_num_batches_tracked_is_optional_on_import():
  _, state_dict, variables = _imported("resnet8")
  without = {key: value for key, value in state_dict.items()
             if not key.endswith(torch_layout.NUM_BATCHES_TRACKED)}
  imported = torch_layout.variables_from_torch_state_dict("resnet8", without, variables)
  assert all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(imported),
                                                  jax.tree.leaves(variables)))


def test_one_error_names_missing_unexpected_and_wrongly_shaped_keys():
  _, state_dict, variables = _imported("resnet8")
  broken = dict(state_dict)
  del broken["layer2.0.downsample.1.running_var"]
  broken["layer4.0.conv1.weight"] = np.zeros((1,), np.float32)
  broken["fc.weight"] = np.zeros((100, 64), np.float32)
  with pytest.raises(ValueError) as error:
    torch_layout.variables_from_torch_state_dict("resnet8", broken, variables)
  message = str(error.value)
  assert "1 missing: layer2.0.downsample.1.running_var" in message
  assert "1 unexpected: layer4.0.conv1.weight" in message
  assert "1 wrong shape: fc.weight is (100, 64), expected (10, 64)" in message
  assert "resnet8" in message and "models/resnet.py" in message


def test_model_without_published_layout_lists_the_supported_ones():
  with pytest.raises(ValueError, match="'cnn_small' has no published PyTorch layout") as error:
    torch_layout.torch_state_dict_from_variables("cnn_small", {})
  assert "resnet56" in str(error.value) and "ShuffleV2_1_5" in str(error.value)


@pytest.mark.parametrize("name, flax_path, torch_key", [
    ("wrn_40_2", ("block2_0", "shortcut_conv"), "block2.layer.0.convShortcut"),
    ("vgg13", ("block1_1_bn",), "block1.4"),
    ("MobileNetV2", ("blocks2_1", "depthwise_conv"), "blocks.2.1.conv.3"),
    ("ShuffleV2", ("layer3_2",), "layer3.3"),
    ("ResNet50_cifar", ("layer2_0", "downsample_bn"), "layer2.0.shortcut.1"),
    ("ResNet50", ("layer4_0", "downsample_conv"), "layer4.0.downsample.0"),
])
def test_renames_follow_the_published_names(name, flax_path, torch_key):
  layout = torch_layout.layout_of(name)
  assert ".".join(layout.torch_module_name(part) for part in flax_path) == torch_key
