"""The trainer on mocked CIFAR-100 and ImageNet (tfds.testing.mock_data): the real configs run,
with small models, one of each pipeline shape: teacher ▶ student on both data sets and
standard ▶ generous ▶ student. (Every config file validates in test_config.py; every method
learns on digits in tests/methods, ATSC from two teachers in test_atsc.py.)"""

import pytest

from jaxkd import train
from tests.config_files import load_config
from tests.mocked_tfds import NUM_EXAMPLES, mocked_dir  # pylint: disable=unused-import


def small_pipeline(name, data_dir, model, **shared):
  """The config `name` with small models and a few steps, on the mocked data dir."""
  config = load_config(name)
  config.data_dir, config.batch_size, config.eval_batch_size, config.max_steps = data_dir, 16, 16, 2
  for field, value in shared.items():
    config[field] = value
  config.stages.teacher.student_model = model
  config.stages.student.student_model = model
  config.stages.student.teacher_model = model
  return config


@pytest.mark.slow
def test_kd_pipeline_on_mocked_cifar100(mocked_dir, tmp_path):
  summary = train.train_and_evaluate(small_pipeline("kd_cifar100", mocked_dir, "resnet8"),
                                     str(tmp_path))
  assert summary["dataset"] == "cifar100" and summary["method"] == "kd"
  student = summary["stages"]["student"]
  assert student["steps"] == 2 and student["total_steps"] == 240 * (NUM_EXAMPLES // 16)
  assert 0.0 <= student["final_test_accuracy"] <= 1.0
  assert len(student["teacher_test_accuracy"]) == 1


@pytest.mark.slow
def test_dkd_pipeline_on_mocked_imagenet(mocked_dir, tmp_path):
  config = small_pipeline("dkd_imagenet", mocked_dir, "cnn_small")
  config.stages.teacher.image_size = config.stages.student.image_size = 32
  summary = train.train_and_evaluate(config, str(tmp_path))
  student = summary["stages"]["student"]
  assert summary["dataset"] == "imagenet2012" and student["method"] == "dkd"
  assert student["steps"] == 2 and 0.0 <= student["final_test_accuracy"] <= 1.0




@pytest.fixture(scope="module")
def cifar100_teacher(mocked_dir, tmp_path_factory):
  """A cnn_small trained for one step on mocked CIFAR-100, to stand in for every teacher."""
  config = load_config("teacher_cifar100")
  config.student_model, config.data_dir, config.max_steps = "cnn_small", mocked_dir, 1
  config.batch_size = config.eval_batch_size = 16
  workdir = str(tmp_path_factory.mktemp("teacher"))
  train.train_and_evaluate(config, workdir)
  return workdir


@pytest.mark.slow
def test_generous_pipeline_runs_a_step(mocked_dir, cifar100_teacher, tmp_path):
  """standard ▶ generous ▶ student: the stages after the given standard teacher, small models."""
  config = load_config("generous_teacher_cifar100")
  config.data_dir, config.batch_size, config.eval_batch_size, config.max_steps = (
      mocked_dir, 16, 16, 1)
  for stage in config.stage_order:
    config.stages[stage].student_model = "cnn_small"
  config.stages.generous.teacher_model = config.stages.student.teacher_model = "cnn_small"
  config.teacher_checkpoint = cifar100_teacher
  summary = train.train_and_evaluate(config, str(tmp_path))
  assert list(summary["stages"]) == ["generous", "student"]
  assert summary["steps"] == 1 and 0.0 <= summary["final_test_accuracy"] <= 1.0
