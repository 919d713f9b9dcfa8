"""State_dict files: .pth/.pt/.th (bare or wrapped, `module.` prefixed), .safetensors, .npz."""

import importlib.util
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="PyTorch is optional: pip install torch==2.13.0")

from jaxkd import torch_checkpoint  # pylint: disable=wrong-import-position

STATE_DICT = {
    "conv1.weight": np.arange(16 * 3 * 9, dtype=np.float32).reshape(16, 3, 3, 3),
    "bn1.running_var": np.linspace(0.5, 2.0, 16, dtype=np.float32),
    "bn1.num_batches_tracked": np.array(12, np.int64),
}


def _tensors(state_dict):
  return {key: torch.from_numpy(value.copy()) for key, value in state_dict.items()}


def _assert_equal(found, expected=None):
  expected = STATE_DICT if expected is None else expected
  assert set(found) == set(expected)
  for key, value in expected.items():
    assert found[key].dtype == value.dtype and np.array_equal(found[key], value), key


@pytest.mark.parametrize("wrap", [
    lambda sd: sd,
    lambda sd: {"model": sd, "epoch": 240, "best_acc": 73.1},
    lambda sd: {"state_dict": sd, "optimizer": {"state": {}, "param_groups": []}},
    lambda sd: {"net": sd, "acc": 95.0},
    lambda sd: {f"module.{key}": value for key, value in sd.items()},
    lambda sd: {"model": {f"module.{key}": value for key, value in sd.items()}},
], ids=["bare", "model", "state_dict", "net", "module_prefix", "model_and_module_prefix"])
@pytest.mark.parametrize("suffix", [".pth", ".pt", ".th"])
def test_torch_files_are_unwrapped(tmp_path, wrap, suffix):
  path = tmp_path / f"teacher{suffix}"
  torch.save(wrap(_tensors(STATE_DICT)), path)
  assert torch_checkpoint.is_torch_checkpoint(str(path))
  _assert_equal(torch_checkpoint.read_state_dict(str(path)))


def test_bfloat16_tensors_are_read_as_float32(tmp_path):
  path = tmp_path / "half.pth"
  torch.save({"fc.weight": torch.ones(2, 3, dtype=torch.bfloat16)}, path)
  found = torch_checkpoint.read_state_dict(str(path))
  assert found["fc.weight"].dtype == np.float32 and np.all(found["fc.weight"] == 1)


@pytest.mark.parametrize("suffix", [".pth", ".npz", ".safetensors"])
def test_written_files_read_back_exactly(tmp_path, suffix):
  if suffix == ".safetensors" and importlib.util.find_spec("safetensors") is None:
    pytest.skip("the optional 'safetensors' package is not installed")
  path = str(tmp_path / "nested" / f"model{suffix}")
  torch_checkpoint.write_state_dict(STATE_DICT, path)
  _assert_equal(torch_checkpoint.read_state_dict(path))


def test_written_pth_holds_torch_tensors(tmp_path):
  path = tmp_path / "model.pth"
  torch_checkpoint.write_state_dict(STATE_DICT, str(path))
  loaded = torch.load(path, map_location="cpu", weights_only=True)
  assert all(torch.is_tensor(value) for value in loaded.values())
  assert loaded["bn1.num_batches_tracked"].dtype == torch.int64


def test_npz_with_module_prefix_is_unwrapped(tmp_path):
  path = tmp_path / "teacher.npz"
  np.savez(path, **{f"module.{key}": value for key, value in STATE_DICT.items()})
  _assert_equal(torch_checkpoint.read_state_dict(str(path)))


class _Options:
  """Stands for a training script's own class pickled next to the weights."""


def test_pickled_objects_are_refused_with_the_fix(tmp_path):
  path = tmp_path / "with_options.pth"
  torch.save({"model": _tensors(STATE_DICT), "opt": _Options()}, path)
  with pytest.raises(ValueError, match=r"re-save its weights with torch.save\(model.state_dict"):
    torch_checkpoint.read_state_dict(str(path))


def test_without_torch_reading_a_pth_names_the_install_command(tmp_path, monkeypatch):
  path = tmp_path / "teacher.pth"
  torch.save(_tensors(STATE_DICT), path)
  monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` now raises ImportError.
  with pytest.raises(ImportError) as error:
    torch_checkpoint.read_state_dict(str(path))
  message = str(error.value)
  assert "pip install torch==2.13.0" in message and "\n" not in message


def test_missing_file_and_unknown_suffix_are_reported(tmp_path):
  with pytest.raises(FileNotFoundError, match="no state_dict file"):
    torch_checkpoint.read_state_dict(str(tmp_path / "absent.pth"))
  with pytest.raises(ValueError, match=r"must|ending in \.pth"):
    torch_checkpoint.read_state_dict(str(tmp_path / "weights.ckpt"))


def test_suffixes_select_torch_checkpoints():
  assert all(torch_checkpoint.is_torch_checkpoint(f"a/b{suffix}")
             for suffix in (".pth", ".PT", ".th", ".safetensors", ".npz"))
  assert not torch_checkpoint.is_torch_checkpoint("/runs/teacher")
  assert not torch_checkpoint.is_torch_checkpoint("/runs/teacher/export")
