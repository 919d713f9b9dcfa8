"""Each logit method distils a student that learns on the real digits data set."""

import pytest

from jaxkd import methods, recipes, train


def digits_run(method, model, epochs):
  config = recipes.cifar_run(method, model, "digits")
  config.batch_size, config.eval_batch_size, config.num_epochs = 64, 120, epochs
  config.eval_every_epochs = epochs
  config.log_every_steps = 22
  return config


@pytest.fixture(scope="module")
def digits_teacher(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("teacher"))
  summary = train.train_and_evaluate(digits_run("ce", "cnn_large", 6), workdir)
  assert summary["final_eval_accuracy"] > 0.9
  return workdir


@pytest.mark.parametrize("name, settings", [
    ("kd", {}), ("dkd", {"warmup_epochs": 1}), ("ka", {}), ("dtd", {"dtd_weight": "cwsm"}),
    ("lskd", {}), ("student_friendly", {}), ("generous", {}),
    ("dkd", {"transforms": "ka,dtd", "warmup_epochs": 1}),
])
def test_student_learns(digits_teacher, tmp_path, name, settings):
  config = digits_run(name, "cnn_small", 3)
  config.teacher_model, config.teacher_checkpoint = "cnn_large", digits_teacher
  config[name].update(settings)
  summary = train.train_and_evaluate(config, str(tmp_path))
  assert summary["teacher_eval_accuracy"][0] > 0.9
  assert summary["final_eval_accuracy"] > 0.7, summary["final_eval_accuracy"]
  assert methods.METHODS.get(name).name == summary["method"]
