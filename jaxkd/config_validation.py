"""Checks a run's config before anything is built or compiled.

Each problem is reported as one line that says what to fix.
"""

import jax
import ml_collections

from jaxkd import data, methods, models

FIELD_TYPES = {
    "method": str, "dataset": str, "data_dir": str, "input_path": str, "image_size": int,
    "student_model": str, "teacher_model": str, "teacher_checkpoint": str,
    "student_checkpoint": str, "validation_examples": int, "validation_seed": int,
    "eval_every_steps": int,
    "batch_size": int, "eval_batch_size": int, "num_epochs": int, "max_steps": int, "seed": int,
    "half_precision": bool, "conv_impl": str, "log_every_steps": int, "eval_every_epochs": int,
    "checkpoint_every_steps": int, "keep_checkpoints": int,
}
INPUT_PATHS = ("auto", "device", "tfdata")


def split_names(value: str) -> tuple[str, ...]:
  """'a, b' → ('a', 'b'): teacher models and checkpoints are comma-separated lists."""
  return tuple(part.strip() for part in value.split(",") if part.strip())


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
  method = methods.create_method(config)  # Unknown method or method settings raise here.
  data.dataset_info(config.dataset)
  models.create_model(config.student_model, num_classes=2)
  teacher_models = split_names(config.teacher_model)
  for name in teacher_models:
    models.create_model(name, num_classes=2)
  method.validate()
  if method.teacher_mode is not methods.base.TeacherMode.NONE:
    checkpoints = split_names(config.teacher_checkpoint)
    if len(checkpoints) != len(teacher_models):
      raise ValueError(f"{len(teacher_models)} teacher model(s) but {len(checkpoints)} teacher "
                       "checkpoint(s): give one --config.teacher_checkpoint per teacher, "
                       "comma-separated")
  if config.input_path not in INPUT_PATHS:
    raise ValueError(f"unknown input_path '{config.input_path}'; valid: {', '.join(INPUT_PATHS)}")
  for field in ("batch_size", "eval_batch_size"):
    if config[field] <= 0 or config[field] % jax.device_count():
      raise ValueError(f"config.{field}={config[field]} must be a positive multiple of the "
                       f"{jax.device_count()} devices")
  for field in ("num_epochs", "log_every_steps", "eval_every_epochs", "keep_checkpoints"):
    if config[field] <= 0:
      raise ValueError(f"config.{field} must be positive, got {config[field]}")
  for field in ("max_steps", "validation_examples", "eval_every_steps"):
    if config[field] < 0:
      raise ValueError(f"config.{field} must be ≥ 0 (0: off), got {config[field]}")
