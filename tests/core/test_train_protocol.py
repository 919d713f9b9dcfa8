"""The evaluation protocol of a run on the real digits: a held-out validation split chooses the
best step, the history records every evaluation, and a student can start from trained weights."""

import errno
import json
import os
import subprocess
import sys

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from jaxkd import evaluate, recipes, train

REPO = os.path.join(os.path.dirname(__file__), "..", "..")


def digits_ce(epochs: int, **fields):
  config = recipes.cifar_run("ce", "cnn_small", "digits")
  config.batch_size, config.eval_batch_size, config.num_epochs = 64, 120, epochs
  config.log_every_steps = 10
  config.update(fields)
  return config


def exported(workdir):
  return ocp.StandardCheckpointer().restore(os.path.join(workdir, "export", "variables"))


@pytest.fixture(scope="module")
def validated_run(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("validated"))
  return workdir, train.train_and_evaluate(digits_ce(3, validation_examples=100), workdir)


@pytest.mark.slow
def test_validation_split_chooses_the_best_step(validated_run):
  _, summary = validated_run
  assert summary["steps_per_epoch"] == (1437 - 100) // 64
  assert summary["best_selected_by"] == "validation"
  history = summary["history"]
  assert [p["step"] for p in history] == [20, 40, 60]
  assert [p["epoch"] for p in history] == [1.0, 2.0, 3.0]
  best = max(history, key=lambda p: p["validation/accuracy"])
  assert summary["best_step"] == best["step"]
  assert summary["best_validation_accuracy"] == best["validation/accuracy"]
  assert summary["test_accuracy_at_best"] == best["test/accuracy"]
  assert summary["final_test_accuracy"] == history[-1]["test/accuracy"] > 0.8
  # 100 validation images are counted exactly: every accuracy is a multiple of 1/100.
  for point in history:
    assert point["validation/accuracy"] * 100 == pytest.approx(
        round(point["validation/accuracy"] * 100))


@pytest.mark.slow
def test_without_validation_the_test_split_chooses(tmp_path):
  summary = train.train_and_evaluate(digits_ce(1, eval_every_steps=10), str(tmp_path))
  assert summary["best_selected_by"] == "test" and "best_test_accuracy" in summary
  assert [p["step"] for p in summary["history"]] == [10, 20, 22]
  assert all("validation/accuracy" not in p for p in summary["history"])


@pytest.mark.slow
def test_evaluate_scores_an_export_as_the_run_did(validated_run):
  workdir, summary = validated_run
  result = evaluate.evaluate_checkpoint(workdir, dataset="digits", batch_size=96)
  assert result["model"] == "cnn_small" and result["count"] == 360
  assert result["accuracy"] == pytest.approx(summary["final_test_accuracy"], abs=1e-9)
  assert result["accuracy"] <= result["top5_accuracy"] <= 1.0


@pytest.mark.slow
def test_student_starts_from_a_checkpoint(validated_run, tmp_path):
  workdir, _ = validated_run
  config = digits_ce(1, student_checkpoint=workdir, max_steps=1)
  config.optimizer.learning_rate = 0.0
  config.optimizer.weight_decay = 0.0
  train.train_and_evaluate(config, str(tmp_path))
  start, after = exported(workdir)["params"], exported(str(tmp_path))["params"]
  for a, b in zip(jax.tree.leaves(start), jax.tree.leaves(after)):
    np.testing.assert_array_equal(a, b)


@pytest.mark.slow
def test_student_checkpoint_of_another_model_is_refused(validated_run, tmp_path):
  workdir, _ = validated_run
  config = digits_ce(1, student_checkpoint=workdir)
  config.student_model = "cnn_large"
  with pytest.raises(ValueError, match="holds a 'cnn_small' model"):
    train.train_and_evaluate(config, str(tmp_path))


@pytest.mark.slow
def test_evaluate_command_prints_and_writes_json(validated_run, tmp_path):
  workdir, summary = validated_run
  output = tmp_path / "eval.json"
  completed = subprocess.run(
      [sys.executable, "-m", "jaxkd.evaluate", f"--checkpoint={workdir}", "--dataset=digits",
       "--batch_size=120", f"--output={output}"],
      capture_output=True, text=True, check=False, cwd=REPO,
      env=dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8"))
  assert completed.returncode == 0, completed.stderr[-2000:]
  assert "cnn_small on digits test: top-1" in completed.stdout
  assert "over 360 examples" in completed.stdout
  written = json.loads(output.read_text())
  assert written["accuracy"] == pytest.approx(summary["final_test_accuracy"], abs=1e-9)
  assert written["input_mean"] == [0.3055] and written["input_std"] == [0.3759]


def test_evaluate_command_rejects_a_state_dict_without_model(tmp_path):
  completed = subprocess.run(
      [sys.executable, "-m", "jaxkd.evaluate", f"--checkpoint={tmp_path / 'teacher.pth'}",
       "--dataset=digits"], capture_output=True, text=True, check=False, cwd=REPO)
  assert completed.returncode != 0
  assert "give its architecture with --model" in completed.stderr.splitlines()[-1]


@pytest.mark.parametrize("output, expected", [
    ("teacher.pth", "--output={tmp}/teacher.pth holds a model file: give another --output, or "
     "--overwrite to write over it"),
    ("folder", "--output={tmp}/folder is a directory: give the path of a file"),
    ("teacher.pth/eval.json", "--output={tmp}/teacher.pth/eval.json cannot be written "
     "({tmp}/teacher.pth is a file, not a directory): give a path you can write to"),
], ids=["model_file", "directory", "under_a_file"])
def test_evaluate_command_refuses_its_output_before_evaluating(tmp_path, output, expected):
  (tmp_path / "teacher.pth").write_bytes(b"weights")
  (tmp_path / "folder").mkdir()
  completed = subprocess.run(
      [sys.executable, "-m", "jaxkd.evaluate", f"--checkpoint={tmp_path / 'absent'}",
       "--dataset=digits", f"--output={tmp_path / output}"],
      capture_output=True, text=True, check=False, cwd=REPO)
  assert completed.returncode != 0 and "Traceback" not in completed.stderr
  assert completed.stderr.splitlines()[-1] == f"jaxkd.evaluate: {expected.format(tmp=tmp_path)}"
  assert (tmp_path / "teacher.pth").read_bytes() == b"weights"


def test_evaluate_output_on_a_full_disk_is_one_line(tmp_path, monkeypatch):
  def full_disk(*_, **__):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

  monkeypatch.setattr(json, "dump", full_disk)
  output = tmp_path / "eval.json"
  with pytest.raises(ValueError) as error:
    evaluate.write_result({"accuracy": 0.5}, str(output))
  assert str(error.value) == (f"--output={output} could not be written (No space left on "
                              "device): free space on its disk, or give another --output")
