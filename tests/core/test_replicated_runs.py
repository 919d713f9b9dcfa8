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
  teacher = _digits_config(method="ce", student_model="cnn_large", max_steps=20)
  train.train_and_evaluate(teacher, workdir)
  return workdir


def _student(teacher, **fields):
  return _digits_config(teacher_model="cnn_large", teacher_checkpoint=teacher, **fields)


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



@pytest.mark.slow
def test_a_pipeline_with_seeds_chains_each_seed_to_its_own_teacher(tmp_path):
  from jaxkd import config_schema, main, run_record  # pylint: disable=g-import-not-at-top
  # standard ▶ generous ▶ student: G seed s starts from, and learns from, standard seed s.
  generous = _digits_config(method="generous", student_model="cnn_large",
                            teacher_model="cnn_large", teacher_checkpoint="@standard")
  student = _digits_config(teacher_model="cnn_large", teacher_checkpoint="@generous")
  config = config_schema.pipeline_config({
      "standard": _digits_config(method="ce", student_model="cnn_large"),
      "generous": generous, "student": student})
  config.seeds, config.max_steps = "0,1", 10
  workdir = str(tmp_path / "pipeline")
  summary = train.train_and_evaluate(config, workdir)
  for stage in ("standard", "generous", "student"):
    assert set(summary["stages"][stage]["replicas"]) == {"seed_0", "seed_1"}
  assert summary["final_test_accuracy_count"] == 2
  assert main.results_table(summary).split("\n")[1].startswith("standard/seed_0 ")
  for stage, teacher_stage in (("generous", "standard"), ("student", "generous")):
    teachers = [os.path.join(workdir, teacher_stage, f"seed_{s}") for s in (0, 1)]
    assert (run_record.export_fingerprint(teachers[0])["sha256"]
            != run_record.export_fingerprint(teachers[1])["sha256"])
    for seed, teacher_dir in enumerate(teachers):  # Seed s learnt from its teacher's seed s.
      record = run_record.read_record(os.path.join(workdir, stage, f"seed_{seed}"))
      assert record["inputs"]["teacher 0"] == run_record.export_fingerprint(teacher_dir)

  # G seed 1 is the single run that starts from and learns from standard seed 1 (its own
  # teacher, not seed 0's, though both are frozen); a single run completes {seed} too.
  alone_dir = str(tmp_path / "single")
  single = train.train_and_evaluate(_digits_config(
      method="generous", student_model="cnn_large", teacher_model="cnn_large",
      teacher_checkpoint=os.path.join(workdir, "standard", "seed_{seed}"), seed=1,
      max_steps=10), alone_dir)
  replica = _export(os.path.join(workdir, "generous", "seed_1"))
  assert max(float(np.max(np.abs(np.asarray(x) - np.asarray(y))))
             for x, y in zip(jax.tree.leaves(replica), jax.tree.leaves(_export(alone_dir)))
             ) <= 1e-5
  assert single["final_test_accuracy"] == summary["stages"]["generous"]["replicas"]["seed_1"][
      "final_test_accuracy"]

  rerun = train.train_and_evaluate(config, workdir)  # Every stage is found done.
  assert rerun["wall_time_s"] == summary["wall_time_s"]
