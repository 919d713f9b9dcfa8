"""The jaxkd configs of a study's runs: the teacher it trains and each (method, seed) run.

Every run is `recipes.cifar_run(method, model, dataset)` with the suite's schedule on top,
the method's settings, the seed, and `--max_steps` when given. An entry with teacher stages
becomes a pipeline: each stage distils a new teacher from the one before (the suite's
teacher first), and the student stage distils from the last ('@<stage>').
"""

import dataclasses
from typing import Any, Mapping

import ml_collections

from jaxkd import config_schema, methods, recipes
from jaxkd.methods import base

from benchmarks import study_suite

STUDENT_STAGE = "student"


@dataclasses.dataclass(frozen=True)
class RunSettings:
  """What the command line sets on every run: data location and an optional step budget."""
  data_dir: str = ""
  max_steps: int | None = None  # None: the suite's schedule decides.


def apply_overrides(config: ml_collections.ConfigDict, overrides: Mapping[str, Any],
                    where: str) -> ml_collections.ConfigDict:
  """Sets each dotted field of `overrides` ('optimizer.learning_rate': 0.05) on `config`."""
  for path, value in overrides.items():
    *parents, field = path.split(".")
    section = config
    for parent in parents:
      section = section.get(parent)
      if not isinstance(section, ml_collections.ConfigDict):
        raise ValueError(f"{where}: '{path}' is not a config field (no section '{parent}')")
    if field not in section:
      raise ValueError(f"{where}: '{path}' is not a config field; fields there: "
                       f"{', '.join(sorted(section.keys()))}")
    section[field] = value
  return config


def _run(suite: study_suite.Suite, method: str, model: str, seed: int,
         settings: RunSettings) -> ml_collections.ConfigDict:
  config = recipes.cifar_run(method, model, suite.dataset)
  apply_overrides(config, suite.schedule, f"suite '{suite.name}' schedule")
  config.seed = seed
  config.data_dir = settings.data_dir
  if settings.max_steps is not None:
    config.max_steps = settings.max_steps
  return config


def base_run(suite: study_suite.Suite, settings: RunSettings) -> ml_collections.ConfigDict:
  """The suite's schedule on a CE run of its student (seed 0): what every run shares."""
  return _run(suite, "ce", suite.student_model, 0, settings)


def teacher_config(suite: study_suite.Suite, settings: RunSettings) -> ml_collections.ConfigDict:
  """The CE run that trains a suite's `TrainedTeacher` (seed 0)."""
  teacher = suite.teacher
  config = _run(suite, "ce", teacher.model, 0, settings)
  apply_overrides(config, teacher.overrides, f"suite '{suite.name}' teacher overrides")
  if settings.max_steps is not None:  # The command line wins over the suite's overrides.
    config.max_steps = settings.max_steps
  return config


def _method_run(suite, method, model, method_settings, teacher_checkpoint, seed,
                settings) -> ml_collections.ConfigDict:
  """A run of `method` training `model`, from the teacher at `teacher_checkpoint` if it has one."""
  config = _run(suite, method, model, seed, settings)
  config[method].update(dict(method_settings))
  if methods.METHODS.get(method).teacher_mode is not base.TeacherMode.NONE:
    config.teacher_model, config.teacher_checkpoint = suite.teacher.model, teacher_checkpoint
  return config


def run_config(suite: study_suite.Suite, entry: study_suite.MethodEntry, seed: int,
               teacher_dir: str, student_start_dir: str | None,
               settings: RunSettings) -> ml_collections.ConfigDict:
  """The config of row `entry` with `seed`: one run, or a pipeline with teacher stages.

  `teacher_dir` holds the suite's teacher (an export or a run workdir);
  `student_start_dir`, when given, the export the student starts from.
  """
  teacher = teacher_dir
  stages = {}
  for stage in entry.teacher_stages:
    stages[stage.name] = apply_overrides(
        _method_run(suite, stage.method, suite.teacher.model, stage.settings, teacher, seed,
                    settings), stage.overrides, f"suite '{suite.name}' stage '{stage.name}'")
    teacher = f"@{stage.name}"
  student = _method_run(suite, entry.method, suite.student_model, entry.settings, teacher, seed,
                        settings)
  if student_start_dir:
    student.student_checkpoint = student_start_dir
  if entry.configure is not None:
    entry.configure(student)
  if not stages:
    return student
  return config_schema.pipeline_config({**stages, STUDENT_STAGE: student})


def stage_configs(config: ml_collections.ConfigDict) -> tuple[ml_collections.ConfigDict, ...]:
  """The runs of a config: itself, or a pipeline's stages in order."""
  if config_schema.is_pipeline(config):
    return tuple(config.stages[name] for name in config.stage_order)
  return (config,)
