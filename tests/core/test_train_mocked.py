"""The trainer on mocked CIFAR-100 and ImageNet (tfds.testing.mock_data): the real configs run."""

import importlib.util
import os

from jaxkd import train
from tests.mocked_tfds import NUM_EXAMPLES, mocked_dir  # pylint: disable=unused-import

CONFIGS = os.path.join(os.path.dirname(__file__), "..", "..", "configs")


def load_config(name):
  spec = importlib.util.spec_from_file_location(name, os.path.join(CONFIGS, f"{name}.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()


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


def test_kd_pipeline_on_mocked_cifar100(mocked_dir, tmp_path):
  summary = train.train_and_evaluate(small_pipeline("kd_cifar100", mocked_dir, "resnet8"),
                                     str(tmp_path))
  assert summary["dataset"] == "cifar100" and summary["method"] == "kd"
  student = summary["stages"]["student"]
  assert student["steps"] == 2 and student["total_steps"] == 240 * (NUM_EXAMPLES // 16)
  assert 0.0 <= student["final_eval_accuracy"] <= 1.0
  assert len(student["teacher_eval_accuracy"]) == 1


def test_dkd_pipeline_on_mocked_imagenet(mocked_dir, tmp_path):
  config = small_pipeline("dkd_imagenet", mocked_dir, "ResNet18")
  config.stages.teacher.image_size = config.stages.student.image_size = 32
  summary = train.train_and_evaluate(config, str(tmp_path))
  student = summary["stages"]["student"]
  assert summary["dataset"] == "imagenet2012" and student["method"] == "dkd"
  assert student["steps"] == 2 and 0.0 <= student["final_eval_accuracy"] <= 1.0
