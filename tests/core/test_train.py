"""The trainer end to end on the real digits data: it learns, resumes exactly, and stops on NaN."""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from jaxkd import recipes, train
from tests.config_files import load_config

REPO = os.path.join(os.path.dirname(__file__), "..", "..")


def exported_params(workdir):
  return ocp.StandardCheckpointer().restore(os.path.join(workdir, "export", "variables"))


@pytest.mark.slow
def test_quickstart_teacher_learns_student_distills_and_rerun_skips(tmp_path):
  summary = train.train_and_evaluate(load_config("quickstart"), str(tmp_path))
  teacher, student = summary["stages"]["teacher"], summary["stages"]["student"]
  assert teacher["final_test_accuracy"] >= 0.90
  assert student["final_test_accuracy"] >= 0.80
  assert student["teacher_test_accuracy"] == [pytest.approx(teacher["final_test_accuracy"])]
  assert summary["final_test_accuracy"] == student["final_test_accuracy"]
  on_disk = json.load(open(tmp_path / "summary.json"))
  for key in ("final_test_accuracy", "test_accuracy_at_best", "wall_time_s", "steps",
              "images_per_s", "method", "dataset"):
    assert key in on_disk
  assert on_disk["method"] == "kd" and on_disk["dataset"] == "digits"
  rerun = train.train_and_evaluate(load_config("quickstart"), str(tmp_path))
  assert rerun["stages"]["student"]["wall_time_s"] == student["wall_time_s"]  # Skipped, not rerun.


def digits_ce(max_steps):
  config = recipes.cifar_run("ce", "cnn_small", "digits")
  config.batch_size, config.num_epochs, config.max_steps = 64, 3, max_steps
  config.log_every_steps = 5
  return config


@pytest.mark.slow
def test_interrupted_run_resumes_to_the_same_weights(tmp_path):
  straight = train.train_and_evaluate(digits_ce(40), str(tmp_path / "straight"))
  first = train.train_and_evaluate(digits_ce(25), str(tmp_path / "resumed"))
  assert first["steps"] == 25 and not first["finished"]
  resumed = train.train_and_evaluate(digits_ce(40), str(tmp_path / "resumed"))
  assert resumed["steps"] == straight["steps"] == 40
  a = exported_params(str(tmp_path / "straight"))
  b = exported_params(str(tmp_path / "resumed"))
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(x, y)
  assert resumed["final_test_accuracy"] == straight["final_test_accuracy"]
  assert os.listdir(tmp_path / "resumed" / "best")


@pytest.mark.slow
def test_diverging_run_stops_with_advice(tmp_path):
  config = digits_ce(30)
  config.optimizer.learning_rate = 1e8
  with pytest.raises(FloatingPointError, match=r"rerun the same command with "
                                               r"--config.optimizer.learning_rate=5e\+07 "):
    train.train_and_evaluate(config, str(tmp_path))


def run_cli(*args):
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2")
  return subprocess.run([sys.executable, "-m", "jaxkd.main", *args], cwd=REPO, env=env,
                        capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_command_line_runs_with_overrides_and_rejects_bad_ones(tmp_path):
  done = run_cli("--config=configs/quickstart.py", f"--workdir={tmp_path}",
                 "--config.max_steps=3", "--config.num_epochs=1", "--config.seed=3")
  assert done.returncode == 0, done.stderr[-3000:]
  summary = json.load(open(tmp_path / "summary.json"))
  assert summary["steps"] == 3 and summary["config"]["seed"] == 3
  bad = run_cli("--config=configs/teacher_cifar100.py", f"--workdir={tmp_path / 'bad'}",
                "--config.method=kdd")
  assert bad.returncode != 0
  assert "unknown method 'kdd'; valid methods:" in bad.stderr
