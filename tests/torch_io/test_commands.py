"""`python -m jaxkd.import_torch` / `jaxkd.export_torch`, PyTorch teachers in
`checkpoint.load_exported_model`, and the published CIFAR-100 ResNet-56 teacher."""

import errno
import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="PyTorch is optional: pip install torch==2.13.0")

from benchmarks import torch_models  # pylint: disable=wrong-import-position
from jaxkd import checkpoint, export_torch, import_torch  # pylint: disable=wrong-import-position
from jaxkd import step as step_lib, torch_layout  # pylint: disable=wrong-import-position
from tests.torch_io import random_torch  # pylint: disable=wrong-import-position

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PUBLISHED_TEACHER = os.path.join(ROOT, "..", "shared", "teachers", "cifar100_resnet56.pth")
CIFAR100_MEAN = (0.5070, 0.4865, 0.4409)
CIFAR100_STD = (0.2673, 0.2564, 0.2761)


def _replicated_template(name: str, num_classes: int):
  """The variables template of `name`, replicated over every device (as train.py places it)."""
  replicated = step_lib.replicated_sharding(step_lib.create_mesh())
  like = import_torch.variables_template(name, num_classes)
  return jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=replicated),
                      like)


def _assert_trees_equal(found, expected):
  assert jax.tree.structure(found) == jax.tree.structure(expected)
  for a, b in zip(jax.tree.leaves(found), jax.tree.leaves(expected)):
    assert np.array_equal(np.asarray(a), np.asarray(b))


@pytest.fixture(scope="module")
def imported_resnet8(tmp_path_factory):
  """A random resnet8 saved RepDistiller-style ({"model": sd, "epoch": ...}), imported by the
  command line; returns (its PyTorch model, the .pth path, the export directory)."""
  root = tmp_path_factory.mktemp("import_torch")
  model = random_torch.random_model("resnet8", seed=3)
  path = root / "resnet8.pth"
  torch.save({"model": model.state_dict(), "epoch": 240, "best_acc": 70.1}, path)
  out = root / "teacher"
  command = [sys.executable, "-m", "jaxkd.import_torch", "--model", "resnet8",
             "--num_classes", str(random_torch.NUM_CLASSES), "--checkpoint", str(path),
             "--out", str(out), "--mean", *map(str, CIFAR100_MEAN),
             "--std", *map(str, CIFAR100_STD), "--dataset", "cifar100"]
  result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300,
                          check=False)
  assert result.returncode == 0, result.stderr
  return model, path, out


def test_import_command_writes_an_export_that_loads(imported_resnet8):
  model, path, out = imported_resnet8
  description = json.loads((out / "model.json").read_text())
  assert description == {
      "model": "resnet8", "num_classes": random_torch.NUM_CLASSES, "source": str(path),
      "dataset": "cifar100", "input_mean": list(CIFAR100_MEAN), "input_std": list(CIFAR100_STD)}
  like = _replicated_template("resnet8", random_torch.NUM_CLASSES)
  variables, loaded = checkpoint.load_exported_model(str(out), "resnet8", like)
  assert loaded == description
  assert all(leaf.sharding == template.sharding
             for leaf, template in zip(jax.tree.leaves(variables), jax.tree.leaves(like)))
  expected = torch_layout.variables_from_torch_state_dict(
      "resnet8", random_torch.numpy_state_dict(model), like)
  _assert_trees_equal(variables, expected)


@pytest.mark.parametrize("suffix", [".pth", ".npz"])
def test_export_command_writes_a_strict_pytorch_state_dict(imported_resnet8, tmp_path, suffix,
                                                           capsys):
  model, _, out = imported_resnet8
  written = tmp_path / f"student{suffix}"
  export_torch.main(["--checkpoint", str(out), "--out", str(written)])
  assert "resnet8 with 10 classes" in capsys.readouterr().out
  if suffix == ".pth":
    state_dict = torch.load(written, map_location="cpu", weights_only=True)
  else:
    state_dict = {key: torch.from_numpy(value) for key, value in np.load(written).items()}
  fresh = torch_models.create_model("resnet8", random_torch.NUM_CLASSES)
  fresh.load_state_dict(state_dict, strict=True)
  fresh.eval()
  images = random_torch.random_images("resnet8")
  np.testing.assert_array_equal(random_torch.torch_logits(fresh, images),
                                random_torch.torch_logits(model, images))


def test_export_command_accepts_a_run_workdir(imported_resnet8, tmp_path):
  _, _, out = imported_resnet8
  like = import_torch.variables_template("resnet8", random_torch.NUM_CLASSES)
  variables, description = checkpoint.load_exported_model(str(out), "resnet8", like)
  workdir = tmp_path / "run"
  checkpoint.export_model(str(workdir), variables, description)
  written = tmp_path / "from_workdir.pth"
  export_torch.export_checkpoint(str(workdir), str(written))
  state_dict = torch.load(written, map_location="cpu", weights_only=True)
  expected = torch_layout.torch_state_dict_from_variables("resnet8", variables)
  assert set(state_dict) == set(expected)
  assert all(np.array_equal(state_dict[key].numpy(), value) for key, value in expected.items())


def test_load_exported_model_imports_a_torch_file_on_the_fly(imported_resnet8):
  model, path, _ = imported_resnet8
  like = _replicated_template("resnet8", random_torch.NUM_CLASSES)
  variables, description = checkpoint.load_exported_model(str(path), "resnet8", like)
  assert description == {"model": "resnet8", "source": str(path), "input_mean": None,
                         "input_std": None}
  assert all(leaf.sharding == template.sharding
             for leaf, template in zip(jax.tree.leaves(variables), jax.tree.leaves(like)))
  images = random_torch.random_images("resnet8")
  error = random_torch.relative_error(random_torch.jaxkd_logits("resnet8", variables, images),
                                      random_torch.torch_logits(model, images))
  assert error <= 1e-4


def test_a_torch_file_of_another_model_is_refused_by_name(imported_resnet8):
  _, path, _ = imported_resnet8
  like = _replicated_template("resnet14", random_torch.NUM_CLASSES)
  with pytest.raises(ValueError, match=f"teacher checkpoint '{path}'.*model 'resnet14'") as error:
    checkpoint.load_exported_model(str(path), "resnet14", like)
  assert "layer1.1.conv1.weight" in str(error.value)  # resnet14 has two blocks per stage


def test_an_export_of_another_model_names_both_teacher_model_flags(imported_resnet8):
  _, _, out = imported_resnet8
  like = _replicated_template("resnet14", random_torch.NUM_CLASSES)
  with pytest.raises(ValueError, match="holds a 'resnet8' model") as error:
    checkpoint.load_exported_model(str(out), "resnet14", like)
  assert "--config.teacher_model" in str(error.value)
  assert "--config.stages.student.teacher_model" in str(error.value)


def test_a_mismatching_checkpoint_writes_nothing_and_names_every_problem(tmp_path):
  state_dict = random_torch.numpy_state_dict(random_torch.random_model("resnet8"))
  del state_dict["layer3.0.bn2.bias"]
  state_dict["head.weight"] = np.zeros((10, 64), np.float32)
  state_dict["conv1.weight"] = np.zeros((16, 3, 5, 5), np.float32)
  path = tmp_path / "broken.pth"
  torch.save({key: torch.from_numpy(value) for key, value in state_dict.items()}, path)
  out = tmp_path / "teacher"
  with pytest.raises(ValueError) as error:
    import_torch.import_checkpoint("resnet8", random_torch.NUM_CLASSES, str(path), str(out))
  message = str(error.value)
  assert "1 missing: layer3.0.bn2.bias" in message
  assert "1 unexpected: head.weight" in message
  assert "1 wrong shape: conv1.weight is (16, 3, 5, 5), expected (16, 3, 3, 3)" in message
  assert not out.exists()


def test_import_command_reports_errors_in_one_line(tmp_path):
  with pytest.raises(SystemExit, match="no published PyTorch layout") as error:
    import_torch.main(["--model", "cnn_small", "--num_classes", "10", "--checkpoint",
                       str(tmp_path / "x.pth"), "--out", str(tmp_path / "out")])
  assert "\n" not in str(error.value.code)
  with pytest.raises(SystemExit, match="give both --mean and --std"):
    import_torch.main(["--model", "resnet8", "--num_classes", "10", "--checkpoint",
                       str(tmp_path / "x.pth"), "--out", str(tmp_path / "out"),
                       "--mean", "0.5", "0.5", "0.5"])
  assert not (tmp_path / "out").exists()


@pytest.mark.skipif(not os.path.exists(PUBLISHED_TEACHER),
                    reason=f"the published teacher {PUBLISHED_TEACHER} is not on this machine")
def test_published_cifar100_resnet56_imports_with_every_key_and_pytorch_logits():
  model = torch_models.create_model("resnet56", 100).eval()
  model.load_state_dict(torch.load(PUBLISHED_TEACHER, map_location="cpu", weights_only=True),
                        strict=True)
  like = _replicated_template("resnet56", 100)
  variables, _ = checkpoint.load_exported_model(PUBLISHED_TEACHER, "resnet56", like)
  pixels = np.random.default_rng(0).uniform(size=(4, 32, 32, 3))
  images = ((pixels - CIFAR100_MEAN) / CIFAR100_STD).astype(np.float32)
  logits = random_torch.torch_logits(model, images)
  error = random_torch.relative_error(
      random_torch.jaxkd_logits("resnet56", variables, images, num_classes=100), logits)
  assert error <= 1e-4


def _import_argv(checkpoint_path, out, *extra):
  """argv of `jaxkd.import_torch` for a resnet8 of random_torch.NUM_CLASSES classes."""
  return ["--model", "resnet8", "--num_classes", str(random_torch.NUM_CLASSES),
          "--checkpoint", str(checkpoint_path), "--out", str(out), *extra]


def _one_line_exit(command, argv) -> str:
  """The message `command.main(argv)` exits with, checked to be one line."""
  with pytest.raises(SystemExit) as exit_info:
    command.main(argv)
  message = str(exit_info.value.code)
  assert "\n" not in message
  return message


@pytest.mark.parametrize("entries, expected", [
    (["summary.json", "checkpoints/"], "holds a training run (summary.json, checkpoints/)"),
    ([".jaxkd.lock"], "holds a training run (.jaxkd.lock)"),
    (["model.json", "variables/"], "holds an exported model (model.json, variables/)"),
    (["_CHECKPOINT_METADATA"], "holds a checkpoint (_CHECKPOINT_METADATA)"),
], ids=["run", "locked_run", "export", "checkpoint"])
def test_import_refuses_an_out_that_holds_a_run_or_a_model(imported_resnet8, tmp_path, entries,
                                                           expected):
  _, path, _ = imported_resnet8
  out = tmp_path / "out"
  for entry in entries:
    (out / entry).mkdir(parents=True) if entry.endswith("/") else (
        out.mkdir(exist_ok=True), (out / entry).write_text("{}"))
  before = sorted(os.listdir(out))
  message = _one_line_exit(import_torch, _import_argv(path, out))
  assert message == (f"jaxkd.import_torch: --out={out} {expected}: give another --out, or "
                     "--overwrite to write over it")
  assert sorted(os.listdir(out)) == before


def test_import_overwrite_replaces_an_export(imported_resnet8, tmp_path):
  _, path, _ = imported_resnet8
  out = tmp_path / "teacher"
  import_torch.main(_import_argv(path, out, "--dataset", "first"))
  import_torch.main(_import_argv(path, out, "--dataset", "second", "--overwrite"))
  assert json.loads((out / "model.json").read_text())["dataset"] == "second"


def test_import_on_a_full_disk_says_so_in_one_line(imported_resnet8, tmp_path, monkeypatch):
  _, path, _ = imported_resnet8

  def full_disk(*_):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

  monkeypatch.setattr(checkpoint, "write_export", full_disk)
  message = _one_line_exit(import_torch, _import_argv(path, tmp_path / "out"))
  assert message.endswith("could not be written (No space left on device): free space on its "
                          "disk, or give another --out")


@pytest.mark.parametrize("make, expected", [
    (lambda p: p.write_bytes(b"PK\x03\x04" + bytes(100)), "is truncated (a zip archive"),
    (lambda p: p.write_bytes(b"\x00junk"), "is not a PyTorch file"),
    (lambda p: p.mkdir(), "is a directory, not a state_dict file"),
], ids=["truncated", "junk", "folder"])
def test_import_of_a_broken_file_is_one_line(tmp_path, make, expected):
  path = tmp_path / "teacher.pth"
  make(path)
  message = _one_line_exit(import_torch, _import_argv(path, tmp_path / "out"))
  assert message.startswith(f"jaxkd.import_torch: '{path}' {expected}")
  assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("name, num_classes, expected", [
    ("resnet8", 100, "the checkpoint has 100 classes, the model 10 (fc.weight)"),
    ("resnet8x4", 10, "its convolutions have other channel counts (conv1.weight maps 3 to 32 "
     "channels, the model's 3 to 16)"),
    ("resnet14", 10, "it has layers the model lacks (layer1.1.bn1, layer1.1.bn2, "
     "layer1.1.conv1, ...)"),
], ids=["classes", "channels", "layers"])
def test_another_architecture_says_how_it_differs(name, num_classes, expected):
  state_dict = random_torch.numpy_state_dict(torch_models.create_model(name, num_classes))
  like = import_torch.variables_template("resnet8", random_torch.NUM_CLASSES)
  with pytest.raises(ValueError) as error:
    torch_layout.variables_from_torch_state_dict("resnet8", state_dict, like)
  assert f"with this number of classes): {expected}" in str(error.value)


def test_export_refuses_to_replace_a_model_file_unless_told(imported_resnet8, tmp_path):
  _, _, out = imported_resnet8
  written = tmp_path / "student.pth"
  written.write_bytes(b"an older model")
  message = _one_line_exit(export_torch, ["--checkpoint", str(out), "--out", str(written)])
  assert message == (f"jaxkd.export_torch: --out={written} holds a model file: give another "
                     "--out, or --overwrite to write over it")
  assert written.read_bytes() == b"an older model"
  export_torch.main(["--checkpoint", str(out), "--out", str(written), "--overwrite"])
  assert set(torch.load(written, weights_only=True)) >= {"conv1.weight", "fc.weight"}


@pytest.mark.parametrize("command, target, expected", [
    (import_torch, "a_file", "--out={tmp}/a_file is a file: give a directory"),
    (import_torch, "a_file/teacher", "--out={tmp}/a_file/teacher cannot be written "
     "({tmp}/a_file is a file, not a directory)"),
    (export_torch, "folder.pth", "--out={tmp}/folder.pth is a directory: give the path of a "
     "file"),
    (export_torch, "a_file/student.pth", "--out={tmp}/a_file/student.pth cannot be written "
     "({tmp}/a_file is a file, not a directory)"),
], ids=["import_to_a_file", "import_under_a_file", "export_to_a_folder", "export_under_a_file"])
def test_commands_refuse_an_out_they_cannot_write(imported_resnet8, tmp_path, command, target,
                                                  expected):
  _, path, export = imported_resnet8
  (tmp_path / "a_file").write_text("notes")
  (tmp_path / "folder.pth").mkdir()
  out = tmp_path / target
  argv = (_import_argv(path, out) if command is import_torch
          else ["--checkpoint", str(export), "--out", str(out)])
  assert expected.format(tmp=tmp_path) in _one_line_exit(command, argv)
  assert sorted(os.listdir(tmp_path)) == ["a_file", "folder.pth"]
  assert not os.listdir(tmp_path / "folder.pth")


def test_export_of_a_state_dict_file_says_it_is_one(imported_resnet8, tmp_path):
  _, path, _ = imported_resnet8
  message = _one_line_exit(export_torch, ["--checkpoint", str(path), "--out",
                                          str(tmp_path / "student.pth")])
  assert f"--checkpoint '{path}' is a PyTorch state_dict already" in message


def test_export_on_a_full_disk_says_so_and_leaves_no_partial_file(imported_resnet8, tmp_path,
                                                                  monkeypatch):
  _, _, out = imported_resnet8

  def full_disk(file, **_):
    with open(file, "wb") as f:
      f.write(b"PK\x03\x04")
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

  monkeypatch.setattr(np, "savez", full_disk)
  written = tmp_path / "student.npz"
  message = _one_line_exit(export_torch, ["--checkpoint", str(out), "--out", str(written)])
  assert message == (f"jaxkd.export_torch: --out={written} could not be written (No space left "
                     "on device): free space on its disk, or give another --out")
  assert not os.listdir(tmp_path)
