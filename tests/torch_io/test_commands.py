"""`python -m jaxkd.import_torch` / `jaxkd.export_torch`, PyTorch teachers in
`checkpoint.load_exported_model`, and the published CIFAR-100 ResNet-56 teacher."""

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
