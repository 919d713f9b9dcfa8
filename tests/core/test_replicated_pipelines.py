"""Pipelines with seeds end to end on digits: each stage trains the seeds as replicas, and
seed s of a stage learns from (and a generous teacher starts from) seed s of its teacher
stage; `WORKDIR/seed_<s>` holds the single pipeline run with seed s. In a file of its own
so that CI's two workers share the replicated runs' tests."""

import os

import jax
import numpy as np
import pytest

from jaxkd import config_schema, main, reporting, run_record, train

from tests.core.test_replicated_runs import _digits_config, _export


def _generous_pipeline(**shared):
  """standard ▶ generous ▶ student on digits, 10 steps a stage: G starts from, and learns
  from, the standard teacher."""
  generous = _digits_config(method="generous", student_model="cnn_small",
                            teacher_model="cnn_small", teacher_checkpoint="@standard")
  student = _digits_config(teacher_model="cnn_small", teacher_checkpoint="@generous")
  config = config_schema.pipeline_config({
      "standard": _digits_config(method="ce", student_model="cnn_small"),
      "generous": generous, "student": student})
  config.max_steps = 10
  for field, value in shared.items():
    config[field] = value
  return config


@pytest.mark.slow
def test_a_pipeline_with_seeds_chains_each_seed_to_its_own_teacher(tmp_path):
  config = _generous_pipeline(seeds="0,1")
  workdir = str(tmp_path / "pipeline")
  summary = train.train_and_evaluate(config, workdir)
  for stage in ("standard", "generous", "student"):
    assert set(summary["stages"][stage]["replicas"]) == {"seed_0", "seed_1"}
  assert summary["final_test_accuracy_count"] == 2
  assert main.results_table(summary).split("\n")[1].startswith("seed_0/standard ")
  for stage, teacher_stage in (("generous", "standard"), ("student", "generous")):
    teachers = [os.path.join(workdir, f"seed_{s}", teacher_stage) for s in (0, 1)]
    assert (run_record.export_fingerprint(teachers[0])["sha256"]
            != run_record.export_fingerprint(teachers[1])["sha256"])
    for seed, teacher_dir in enumerate(teachers):  # Seed s learnt from its teacher's seed s.
      record = run_record.read_record(os.path.join(workdir, f"seed_{seed}", stage))
      assert record["inputs"]["teacher 0"] == run_record.export_fingerprint(teacher_dir)

  # G seed 1 is the single run that starts from and learns from standard seed 1 (its own
  # teacher, not seed 0's, though both are frozen); a single run completes {seed} too.
  alone_dir = str(tmp_path / "single")
  single = train.train_and_evaluate(_digits_config(
      method="generous", student_model="cnn_small", teacher_model="cnn_small",
      teacher_checkpoint=os.path.join(workdir, "seed_{seed}", "standard"), seed=1,
      max_steps=10), alone_dir)
  replica = _export(os.path.join(workdir, "seed_1", "generous"))
  assert max(float(np.max(np.abs(np.asarray(x) - np.asarray(y))))
             for x, y in zip(jax.tree.leaves(replica), jax.tree.leaves(_export(alone_dir)))
             ) <= 1e-5
  assert single["final_test_accuracy"] == summary["stages"]["generous"]["replicas"]["seed_1"][
      "final_test_accuracy"]

  rerun = train.train_and_evaluate(config, workdir)  # Every stage is found done.
  assert rerun["wall_time_s"] == summary["wall_time_s"]

  # seed_1/ is the single pipeline run with seed 1: its summary, and a run of the pipeline
  # with seed 1 alone there finds every stage done (same configs, same teachers).
  seed_dir = os.path.join(workdir, "seed_1")
  seed_summary = reporting.read_summary(seed_dir)
  written = reporting.read_summary(workdir)  # As JSON keeps it (tuples become lists).
  assert seed_summary["stages"]["student"] == written["stages"]["student"]["replicas"]["seed_1"]
  assert seed_summary["config"]["seed"] == seed_summary["config"]["stages"]["student"]["seed"] == 1
  alone = train.train_and_evaluate(_generous_pipeline(seed=1), seed_dir)
  assert alone["stages"] == seed_summary["stages"]
  assert alone["final_test_accuracy"] == summary["stages"]["student"]["replicas"]["seed_1"][
      "final_test_accuracy"]
