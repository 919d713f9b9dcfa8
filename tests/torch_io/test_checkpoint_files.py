"""State_dict files: .pth/.pt/.th (bare or wrapped, `module.` prefixed), .safetensors, .npz."""

import errno
import importlib.util
import os
import re
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


def _bad_files(folder):
  """case -> (path of a broken state_dict file made in `folder`, what its error must say)."""
  good = folder / "good.pth"
  torch.save(_tensors(STATE_DICT), good)
  legacy = folder / "legacy.pth"
  torch.save(_tensors(STATE_DICT), legacy, _use_new_zipfile_serialization=False)
  npz = folder / "good.npz"
  np.savez(npz, **STATE_DICT)
  files = {
      "truncated_pth": (good, "is truncated (a zip archive without its closing directory)"),
      "truncated_legacy_pth": (legacy, "is truncated or corrupt"),
      "truncated_npz": (npz, "is truncated (a zip archive without its closing directory)"),
      "junk_pth": (folder / "junk.pth", "is not a PyTorch file"),
      "junk_npz": (folder / "junk.npz", "is not a numpy .npz file"),
      "junk_safetensors": (folder / "junk.safetensors", "is not a safetensors file"),
      "empty_pth": (folder / "empty.pth", "is empty"),
      "folder_pth": (folder / "folder.pth", "is a directory, not a state_dict file"),
  }
  for path in (good, legacy, npz):
    path.write_bytes(path.read_bytes()[:path.stat().st_size // 2])
  for name in ("junk.pth", "junk.npz", "junk.safetensors"):
    (folder / name).write_bytes(np.random.default_rng(0).bytes(4096))
  (folder / "empty.pth").write_bytes(b"")
  (folder / "folder.pth").mkdir()
  return {case: (str(path), expected) for case, (path, expected) in files.items()}


CORRUPT_CASES = ["truncated_pth", "truncated_legacy_pth", "truncated_npz", "junk_pth", "junk_npz",
                 "junk_safetensors", "empty_pth", "folder_pth"]


@pytest.mark.parametrize("case", CORRUPT_CASES)
def test_broken_files_are_refused_in_one_line_naming_the_file(tmp_path, case):
  path, expected = _bad_files(tmp_path)[case]
  with pytest.raises(ValueError) as error:
    torch_checkpoint.read_state_dict(path)
  message = str(error.value)
  assert expected in message and f"'{path}'" in message and "\n" not in message


@pytest.mark.parametrize("case", [c for c in CORRUPT_CASES if c != "truncated_legacy_pth"])
def test_cheap_check_needs_no_torch(tmp_path, monkeypatch, case):
  path, expected = _bad_files(tmp_path)[case]
  monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` now raises ImportError.
  with pytest.raises(ValueError, match=re.escape(expected)):
    torch_checkpoint.check_state_dict_file(path)


@pytest.mark.parametrize("suffix", [".pth", ".npz"])
def test_a_failed_write_leaves_the_old_file_and_no_partial_one(tmp_path, monkeypatch, suffix):
  path = tmp_path / f"model{suffix}"
  torch_checkpoint.write_state_dict(STATE_DICT, str(path))
  before = path.read_bytes()

  def full_disk(file):
    """Writes half a file, then fails as a full disk does."""
    with open(file, "wb") as f:
      f.write(b"PK\x03\x04 half")
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

  monkeypatch.setattr(torch, "save", lambda _, file: full_disk(file))
  monkeypatch.setattr(np, "savez", lambda file, **_: full_disk(file))
  with pytest.raises(OSError, match="No space left"):
    torch_checkpoint.write_state_dict({"other": np.zeros(2)}, str(path))
  assert path.read_bytes() == before
  assert sorted(os.listdir(tmp_path)) == [path.name]
