"""The CI suite: the whole study runner on scikit-learn's digits, in well under a minute.

A CE teacher (cnn_large, 6 epochs) trained by the suite, a cnn_small student from scratch,
CE and KD, two seeds, three epochs each, 200 training images held out for validation. It
checks the runner (runs, skipping, merging, the table, the plots), not the methods.
"""

from benchmarks.study_suite import MethodEntry, Suite, TrainedTeacher


def get_suite() -> Suite:
  return Suite(
      name="digits_smoke",
      purpose="the study runner end to end on digits (CI); checks the runner, ranks nothing",
      dataset="digits",
      teacher=TrainedTeacher("cnn_large", {"num_epochs": 6}),
      student_model="cnn_small",
      schedule={"batch_size": 64, "eval_batch_size": 120, "num_epochs": 3,
                "optimizer.learning_rate": 0.05, "optimizer.schedule": "constant",
                "validation_examples": 200, "log_every_steps": 10},
      methods=(MethodEntry("ce", "ce"), MethodEntry("kd", "kd")),
      seeds=(0, 1))
