"""Replicated runs end to end on digits: each replica lands where the single run with its seed
(or setting) would, resumes bit-identically, and a run stopped between two replicas' saves
resumes from the step every replica holds."""

import json
import os

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from jaxkd import recipes, train


def _digits_config(**fields):
  config = recipes.cifar_run("kd", "cnn_small", "digits")
  config.batch_size, config.eval_batch_size, config.num_epochs = 64, 120, 1
  config.log_every_steps, config.eval_every_steps = 5, 10
  for name, value in fields.items():
    config[name] = value
  return config


@pytest.fixture(scope="module")
def digits_teacher(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("teacher"))
  teacher = _digits_config(method="ce", student_model="cnn_small", max_steps=20)
  train.train_and_evaluate(teacher, workdir)
  return workdir


def _student(teacher, **fields):
  return _digits_config(teacher_model="cnn_small", teacher_checkpoint=teacher, **fields)


def _export(workdir):
  return ocp.StandardCheckpointer().restore(os.path.join(workdir, "export", "variables"))


@pytest.mark.slow
def test_replicated_run_writes_single_runs_and_resumes_bit_identically(tmp_path, digits_teacher):
  straight = str(tmp_path / "straight")
  summary = train.train_and_evaluate(_student(digits_teacher, seeds="3,4", max_steps=20),
                                     straight)
  assert set(summary["replicas"]) == {"seed_3", "seed_4"}
  finals = [summary["replicas"][f"seed_{s}"]["final_test_accuracy"] for s in (3, 4)]
  assert summary["final_test_accuracy_mean"] == pytest.approx(np.mean(finals))
  for seed in (3, 4):
    lane = os.path.join(straight, f"seed_{seed}")
    with open(os.path.join(lane, "summary.json")) as f:
      lane_summary = json.load(f)
    assert lane_summary["seed"] == seed and lane_summary["steps"] == 20
    assert [p["step"] for p in lane_summary["history"]] == [10, 20]
    assert os.path.exists(os.path.join(lane, "fingerprint.json"))

  # Stopped at step 10 and resumed: the same variables, bit for bit.
  resumed = str(tmp_path / "resumed")
  train.train_and_evaluate(_student(digits_teacher, seeds="3,4", max_steps=10), resumed)
  train.train_and_evaluate(_student(digits_teacher, seeds="3,4", max_steps=20), resumed)
  for seed in (3, 4):
    a = _export(os.path.join(straight, f"seed_{seed}"))
    b = _export(os.path.join(resumed, f"seed_{seed}"))
    assert all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))

  # As if the run stopped after seed 3 saved step 20 and before seed 4 did: both resume from
  # step 10, the step every replica holds.
  lagging = os.path.join(resumed, "seed_4")
  for name in (os.path.join("checkpoints", "20"), "export", "summary.json"):
    os.rename(os.path.join(lagging, name), str(tmp_path / name.replace(os.sep, "_")))
  again = train.train_and_evaluate(_student(digits_teacher, seeds="3,4", max_steps=20), resumed)
  assert again["steps"] == 20
  assert [p["step"] for p in again["replicas"]["seed_4"]["history"]] == [10, 20]
  assert [p["step"] for p in again["replicas"]["seed_3"]["history"]] == [10, 20]

  # A replica's directory is the single run with its seed: rerunning that run finds it done.
  single = train.train_and_evaluate(_student(digits_teacher, seed=4, max_steps=20),
                                    os.path.join(straight, "seed_4"))
  assert single["final_test_accuracy"] == summary["replicas"]["seed_4"]["final_test_accuracy"]


@pytest.mark.slow
def test_a_sweep_writes_the_single_run_of_each_setting(tmp_path, digits_teacher):
  workdir = str(tmp_path / "sweep")
  summary = train.train_and_evaluate(
      _student(digits_teacher, sweep="kd.temperature=1,8", max_steps=10), workdir)
  assert set(summary["replicas"]) == {"temperature_1", "temperature_8"}
  assert set(summary["settings"]) == {"temperature_1", "temperature_8"}
  assert summary["settings"]["temperature_8"]["final_test_accuracy_count"] == 1
  finals = {name: lane["final_test_accuracy"] for name, lane in summary["replicas"].items()}
  assert finals["temperature_8"] == summary["settings"]["temperature_8"][
      "final_test_accuracy_mean"]
  # Each setting's directory is the single run with it: that run finds itself done.
  single = _student(digits_teacher, max_steps=10)
  single.kd.temperature = 8.0
  done = train.train_and_evaluate(single, os.path.join(workdir, "temperature_8"))
  assert done["final_test_accuracy"] == finals["temperature_8"]
  assert done["config"]["kd"]["temperature"] == 8.0


