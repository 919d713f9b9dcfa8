"""Every config loads and validates; bad settings fail with a one-line fix."""

import glob
import os

import pytest
from absl import flags
from ml_collections import config_flags

from jaxkd import config_schema, config_validation, pipeline, recipes
from tests.config_files import load_config

CONFIG_DIR = os.path.join(os.path.dirname(__file__), "..", "..", "configs")
CONFIG_FILES = sorted(glob.glob(os.path.join(CONFIG_DIR, "*.py")))
CONTRACT = ("dataset", "data_dir", "batch_size", "num_epochs", "max_steps", "seed",
            "teacher_checkpoint")


def load_config_with_flags(path, *overrides):
  """The config `python -m jaxkd.main --config=path *overrides` runs (jaxkd.main's flag)."""
  argv = ["jaxkd.main", f"--config={path}", *overrides]
  flag_values = flags.FlagValues()
  config = config_flags.DEFINE_config_file("config", None, "", flag_values=flag_values,
                                           lock_config=True, sys_argv=argv)
  flag_values(argv)
  return config.value


def runs_of(config):
  if not config_schema.is_pipeline(config):
    return [config]
  return [pipeline.resolve_stage(config, name, "/w") for name in config.stage_order]


@pytest.mark.parametrize("path", CONFIG_FILES, ids=os.path.basename)
def test_config_file_validates_and_has_the_contract_fields(path):
  config = load_config(path)
  for field in CONTRACT:
    assert field in config, f"{path} lacks {field}"
  for run in runs_of(config):
    config_validation.validate(run)
  with open(path) as f:
    assert "python -m jaxkd.main --config=configs/" in f.read(), "docstring holds its command"


def test_pipeline_overrides_reach_every_stage():
  config = load_config(os.path.join(CONFIG_DIR, "quickstart.py"))
  config.dataset, config.seed, config.max_steps = "cifar10_jpeg", 7, 3
  for run in runs_of(config):
    assert (run.dataset, run.seed, run.max_steps) == ("cifar10_jpeg", 7, 3)


def test_pipeline_stage_references_resolve_to_stage_workdirs():
  config = load_config(os.path.join(CONFIG_DIR, "quickstart.py"))
  student = pipeline.resolve_stage(config, "student", "/w")
  assert student.teacher_checkpoint == os.path.join("/w", "teacher")
  assert pipeline.stages_to_run(config) == ("teacher", "student")
  config.teacher_checkpoint = "/trained/teacher"
  assert pipeline.stages_to_run(config) == ("student",)
  assert pipeline.resolve_stage(config, "student", "/w").teacher_checkpoint == "/trained/teacher"


def digits_config(**changes):
  config = recipes.cifar_run("ce", "cnn_small", "digits")
  config.update(changes)
  return config


@pytest.mark.parametrize("changes, message", [
    ({"method": "kdd"}, "unknown method 'kdd'; valid methods: .*kd"),
    ({"student_model": "resnet9"}, "unknown model 'resnet9'; valid models: .*resnet8"),
    ({"dataset": "mnistt"}, "unknown .*'mnistt'.*digits"),
    ({"batch_size": 12}, "batch_size=12 must be a positive multiple of the 8 devices"),
    ({"input_path": "disk"}, "config.input_path must be one of auto, device, tfdata, got 'disk'"),
    ({"num_epochs": 0}, "config.num_epochs must be an integer ≥ 1, got 0"),
])
def test_bad_settings_are_named(changes, message):
  with pytest.raises(ValueError, match=message):
    config_validation.validate(digits_config(**changes))


def test_wrong_type_is_named():
  config = digits_config()
  with config.ignore_type():
    config.batch_size = "64"
  with pytest.raises(ValueError, match=r"config.batch_size must be a int, got '64'"):
    config_validation.validate(config)


def test_method_settings_are_checked():
  config = recipes.cifar_run("kd", "cnn_small", "digits")
  config.teacher_model, config.teacher_checkpoint = "cnn_large", "/t"
  config.kd.temprature = 2.0
  with pytest.raises(ValueError, match="config.kd.temprature is not a setting of method 'kd'"):
    config_validation.validate(config)
  del config.kd["temprature"]
  with config.kd.ignore_type():
    config.kd.temperature = "hot"
  with pytest.raises(ValueError, match="config.kd.temperature must be a float"):
    config_validation.validate(config)


def test_teacher_methods_need_a_teacher():
  config = recipes.cifar_run("kd", "cnn_small", "digits")
  with pytest.raises(ValueError, match="method 'kd' needs a teacher"):
    config_validation.validate(config)
  config.teacher_model, config.teacher_checkpoint = "cnn_large,cnn_small", "/t"
  with pytest.raises(ValueError, match="method 'kd' takes one teacher, got 2"):
    config_validation.validate(config)
  config.teacher_model = "cnn_large"
  config.teacher_checkpoint = "/t,/u"
  with pytest.raises(ValueError, match="1 teacher model.* but 2 teacher checkpoint"):
    config_validation.validate(config)


def test_own_fields_keep_a_stage_value_and_the_rest_stay_shared():
  teacher = recipes.cifar_run("ce", "cnn_large", "digits")
  teacher.num_epochs = 7
  student = recipes.cifar_run("kd", "cnn_small", "digits")
  student.num_epochs = 3
  config = config_schema.teacher_then_student(teacher, student, teacher_own_fields=("num_epochs",))
  assert config.num_epochs == 3
  config.num_epochs, config.seed = 5, 9
  teacher_run, student_run = runs_of(config)
  assert (teacher_run.num_epochs, student_run.num_epochs) == (7, 5)
  assert teacher_run.seed == student_run.seed == 9


def test_teacher_override_maps_one_checkpoint_per_teacher_stage():
  config = load_config(os.path.join(CONFIG_DIR, "atsc_multi_cifar100.py"))
  last = config.stage_order[-1]
  assert pipeline.resolve_stage(config, last, "/w").teacher_checkpoint == "/w/t0,/w/t1"
  config.teacher_checkpoint = "/a,/b"
  assert pipeline.resolve_stage(config, last, "/w").teacher_checkpoint == "/a,/b"
  config.teacher_checkpoint = "/a"
  with pytest.raises(ValueError, match="gives 1 checkpoint.*for the 2 teacher stage"):
    pipeline.resolve_stage(config, last, "/w")


def test_cifar_learning_rate_rule_names_the_small_students():
  for model in ("MobileNetV2", "MobileNetV2_1_0", "ShuffleV1", "ShuffleV2", "ShuffleV2_1_5"):
    assert recipes.cifar_learning_rate(model) == 0.01
  for model in ("resnet8x4", "resnet32x4", "vgg8", "wrn_40_2", "cnn_small"):
    assert recipes.cifar_learning_rate(model) == 0.05


@pytest.mark.parametrize("file, model", [
    ("kd_cifar100.py", "MobileNetV2"), ("kd_cifar100.py", "ShuffleV2"),
    ("atsc_cifar100.py", "MobileNetV2"), ("atsc_cifar100.py", "ShuffleV2")])
def test_small_student_learning_rate_follows_the_command_line_model(file, model):
  path = os.path.join(CONFIG_DIR, file)
  assert load_config_with_flags(path).stages.student.optimizer.learning_rate == 0.05  # resnet8x4
  config = load_config_with_flags(path, f"--config.stages.student.student_model={model}")
  student = pipeline.resolve_stage(config, "student", "/w")
  config_validation.validate(student)
  assert (student.student_model, student.optimizer.learning_rate) == (model, 0.01)
  if student.method == "atsc":  # The teacher's rate is linked to the student's.
    assert student.teacher_optimizer.learning_rate == 0.01
  summary_config = config.to_dict()["stages"]  # What summary.json records.
  assert summary_config["student"]["optimizer"]["learning_rate"] == 0.01
  assert summary_config["teacher"]["optimizer"]["learning_rate"] == 0.05  # resnet32x4.


@pytest.mark.parametrize("file", ["default.py", "teacher_cifar100.py"])
def test_small_student_learning_rate_follows_the_model_of_a_single_run(file):
  path = os.path.join(CONFIG_DIR, file)
  assert load_config_with_flags(path).optimizer.learning_rate == 0.05
  config = load_config_with_flags(path, "--config.student_model=ShuffleV1")
  assert config.optimizer.learning_rate == 0.01
  assert config.to_dict()["optimizer"]["learning_rate"] == 0.01


@pytest.mark.parametrize("file", ["kd_cifar100.py", "atsc_cifar100.py"])
@pytest.mark.parametrize("rate_first", [False, True])
def test_an_explicit_learning_rate_wins_over_the_model_rule(file, rate_first):
  overrides = ["--config.stages.student.student_model=MobileNetV2",
               "--config.stages.student.optimizer.learning_rate=0.05"]
  config = load_config_with_flags(os.path.join(CONFIG_DIR, file),
                                  *(overrides[::-1] if rate_first else overrides))
  student = pipeline.resolve_stage(config, "student", "/w")
  assert (student.student_model, student.optimizer.learning_rate) == ("MobileNetV2", 0.05)
  if student.method == "atsc":
    assert student.teacher_optimizer.learning_rate == 0.05
  assert config.to_dict()["stages"]["student"]["optimizer"]["learning_rate"] == 0.05
