"""Quickstart on scikit-learn's digits (no download): a teacher, then a student distilled by KD.

    python -m jaxkd.main --config=configs/quickstart.py --workdir=/tmp/jaxkd/quickstart

Stage `teacher` trains cnn_large with CE; stage `student` distills cnn_small from it with
KD. Each stage has its own sub-workdir and resumes on its own; rerunning skips finished stages.
"""

from jaxkd import config_schema, recipes


def digits_run(method: str, model: str):
  config = recipes.cifar_run(method, model, "digits")
  config.batch_size = 64
  config.eval_batch_size = 120
  config.num_epochs = 30
  config.optimizer = config_schema.sgd_config(learning_rate=0.05, weight_decay=5e-4,
                                              decay_epochs=(20, 25))
  config.log_every_steps = 20
  config.eval_every_epochs = 5
  return config


def get_config():
  return config_schema.teacher_then_student(digits_run("ce", "cnn_large"),
                                            digits_run("kd", "cnn_small"))
