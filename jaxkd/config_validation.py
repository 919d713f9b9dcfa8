"""Checks a run's config before anything is built or compiled.

Each problem is reported as one line that says what to fix.
"""

import jax
import ml_collections

from jaxkd import config_schema, data, methods, models, optim, replicas
from jaxkd.methods import base
from jaxkd.models import layers
from jaxkd.ranges import AT_LEAST_ONE, NON_NEGATIVE, check_choice, check_ranges, did_you_mean

# The type of every plain field of a run (the sections, such as `optimizer`, check their own).
FIELD_TYPES = {name: type(value) for name, value in config_schema.base_config().items()
               if not isinstance(value, ml_collections.ConfigDict)}
# The valid range of every numeric field of FIELD_TYPES.
FIELD_RANGES = {
    "image_size": AT_LEAST_ONE, "validation_examples": NON_NEGATIVE,  # 0: none.
    "validation_seed": NON_NEGATIVE, "train_examples_per_class": NON_NEGATIVE,
    "train_subset_seed": NON_NEGATIVE, "eval_every_steps": NON_NEGATIVE,  # 0: per epoch.
    "batch_size": AT_LEAST_ONE, "eval_batch_size": AT_LEAST_ONE,
    "num_epochs": AT_LEAST_ONE, "max_steps": NON_NEGATIVE,  # 0: no limit.
    "seed": NON_NEGATIVE, "num_replicas": AT_LEAST_ONE, "log_every_steps": AT_LEAST_ONE,
    "eval_every_epochs": AT_LEAST_ONE,
    "checkpoint_every_steps": NON_NEGATIVE,  # 0: after each evaluation only.
    "keep_checkpoints": AT_LEAST_ONE,
}


def validate(config: ml_collections.ConfigDict) -> None:
  """Raises ValueError with a one-line fix for the first problem found in `config`."""
  for field, expected in FIELD_TYPES.items():
    if field not in config:
      raise ValueError(f"config has no field '{field}': start config files from "
                       "jaxkd.config_schema.base_config()")
    value = config[field]
    if isinstance(value, bool) != (expected is bool) or not isinstance(value, expected):
      raise ValueError(f"config.{field} must be a {expected.__name__}, got {value!r} "
                       f"({type(value).__name__})")
  check_ranges("config", config, FIELD_RANGES)
  runs = replicas.replica_runs(config)  # Malformed or contradictory seeds or sweeps raise here.
  for section in ("optimizer", "teacher_optimizer"):
    optim.validate(config[section], f"config.{section}", config.num_epochs)
  method = methods.create_method(config)  # Unknown method or method settings raise here.
  data.dataset_info(config.dataset, config.data_dir)  # An image folder is checked here too.
  models.create_model(config.student_model, num_classes=2)
  teacher_models = config_schema.split_names(config.teacher_model)
  for name in teacher_models:
    models.create_model(name, num_classes=2)
  method.validate()
  for run in runs:
    if run.settings:  # Each setting of a sweep: traced by the loss, and in its range.
      method.with_settings(dict(run.settings))
      methods.create_method(replicas.replica_config(config, run)).validate()
  if method.teacher_mode is not methods.base.TeacherMode.NONE:
    checkpoints = config_schema.split_names(config.teacher_checkpoint)
    if len(checkpoints) != len(teacher_models):
      raise ValueError(f"{len(teacher_models)} teacher model(s) but {len(checkpoints)} teacher "
                       "checkpoint(s): give one --config.teacher_checkpoint per teacher, "
                       "comma-separated")
  if config.restart_stages not in ("", "run"):
    raise ValueError(f"config.restart_stages='{config.restart_stages}': a single run takes "
                     "'run' (retrain here when the config changed) or ''"
                     f"{did_you_mean(config.restart_stages, ['run'])}")
  check_choice("config.input_path", config.input_path, data.INPUT_PATHS)
  check_choice("config.conv_impl", config.conv_impl, layers.CONV_IMPLS)
  for field in ("batch_size", "eval_batch_size"):
    data.check_batch_size(f"config.{field}", config[field], jax.device_count())
  trains_teacher = method.teacher_mode is base.TeacherMode.TRAINABLE
  for section in ("optimizer", "teacher_optimizer")[:1 + trains_teacher]:
    optim.warn_late_decay(config[section], f"config.{section}", config.num_epochs)
