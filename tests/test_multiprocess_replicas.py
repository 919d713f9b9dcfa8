"""Two processes train replicas exactly as one: the quickstart pipeline with `--config.seeds=0,1`.

As `tests/test_multiprocess.py`, with every stage trained as two replicas (seeds 0 and 1,
student seed s distilled from teacher seed s) on a (replica 2, data 2) mesh: each replica
splits its batch over one device of each process. One process with 4 CPU devices and two
processes with 2 each must give every replica the same summary and exported model.

This is the run that hung before the fix it guards: the replicas' checkpoint stores saved
the same step behind barriers of the same name (orbax then waits for ever), and taking a
state split over processes apart eagerly, replica by replica, ran different programs in the
two processes.
"""

import os

import pytest

from tests.test_multiprocess import (STAGES, STEPS, assert_same_exports, read_summary,
                                     train_in_one_and_two_processes)

SEEDS = ("seed_0", "seed_1")


@pytest.mark.slow
def test_two_processes_train_replicas_exactly_as_one(tmp_path):
  one, two = train_in_one_and_two_processes(tmp_path, "--config.seeds=0,1")
  summary_one, summary_two = read_summary(one), read_summary(two)
  for stage in STAGES:
    for seed in SEEDS:
      reference = summary_one["stages"][stage]["replicas"][seed]
      distributed = summary_two["stages"][stage]["replicas"][seed]
      assert reference["steps"] == distributed["steps"] == STEPS
      assert distributed["final_test_accuracy"] == reference["final_test_accuracy"]
      assert distributed["teacher_test_accuracy"] == reference["teacher_test_accuracy"]
      assert "2 process(es)" in distributed["hardware"]
      assert_same_exports(os.path.join(one, seed, stage), os.path.join(two, seed, stage),
                          f"{seed}/{stage}")
    assert (summary_two["stages"][stage]["final_test_accuracy_mean"]
            == summary_one["stages"][stage]["final_test_accuracy_mean"])
