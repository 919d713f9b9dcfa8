"""The contract between the trainer and a distillation method.

A method is one small class, registered by name with `@methods.register("<name>")` and
built by `methods.create_method(config)` from its own config section and a `RunInfo`
(what it knows of the run), that declares, as pure functions and data:
- `default_config()`: its hyperparameters (the config section named after the method);
- `teacher_mode`: whether it uses no teacher, a frozen one, or trains the teacher;
- `init_extra(...)`: extra trainable modules (projectors, simplifiers), if any;
- `loss(...)`: the scalar loss and namespaced metrics (`loss/ce`, `loss/kd`, ...);
- `predict(...)`: the logits that evaluation scores (the student's own by default);
- optionally `init_state(...)` / `post_update(...)`: state of its own and a second update
  within the same jit-compiled step (ATSC updates the teacher head after the main update);
- `traced_settings`: the settings its loss only does arithmetic with (temperatures, loss
  weights), which a sweep (`config.sweep`) hands to the step as traced values, one per
  replica (`with_settings`); every other setting changes the compiled code.

Parameters and batch statistics are dicts with three groups:
`{'student': ..., 'teachers': (t0, t1, ...), 'extra': ...}`. The trainer builds the run's
optimizers once (`Optimizers`) and hands them to the method, whose main update
(`trainable`, `apply_gradients`) steps `student` and `extra` with the student optimizer
and, when `teacher_mode` is TRAINABLE, `teachers` with the teacher optimizer. A group the
method does not train (a frozen teacher) leaves every step exactly as it entered it. A
method that trains its teachers another way overrides those hooks; the step stays as it is.
"""

import abc
import copy
import dataclasses
import enum
from typing import Any, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import optax

from jaxkd import config_schema
from jaxkd.ranges import Range, check_ranges, did_you_mean
from jaxkd.state import student_trainable

PyTree = Any
Metrics = dict[str, jax.Array]


class TeacherMode(enum.Enum):
  NONE = "none"  # No teacher (plain training).
  FROZEN = "frozen"  # Eval mode, stop_gradient, batch stats never change.
  TRAINABLE = "trainable"  # Gradients reach the teacher; its batch stats move.


@dataclasses.dataclass(frozen=True)
class RunInfo:
  """What a method knows of its run besides its own settings: the teachers' model names and
  checkpoints, and the checkpoint the student starts from ('' = from scratch)."""
  teacher_models: tuple[str, ...] = ()
  teacher_checkpoints: tuple[str, ...] = ()
  student_checkpoint: str = ""

  @classmethod
  def from_config(cls, config: ml_collections.ConfigDict) -> "RunInfo":
    """The run config's `teacher_model`, `teacher_checkpoint` (comma-separated lists) and
    `student_checkpoint`."""
    return cls(teacher_models=config_schema.split_names(config.get("teacher_model", "")),
               teacher_checkpoints=config_schema.split_names(config.get("teacher_checkpoint", "")),
               student_checkpoint=config.get("student_checkpoint", ""))


@dataclasses.dataclass(frozen=True)
class Optimizers:
  """The run's optimizers, built once by the trainer on the run's schedule: `student` from
  `config.optimizer`, `teacher` from `config.teacher_optimizer` (for methods that train
  their teachers)."""
  student: optax.GradientTransformation
  teacher: optax.GradientTransformation


@dataclasses.dataclass(frozen=True)
class Networks:
  """The Flax modules of a run (stateless descriptions; variables live in the train state)."""
  student: nn.Module
  teachers: tuple[nn.Module, ...] = ()
  extra: nn.Module | None = None


@dataclasses.dataclass(frozen=True)
class ShapeInfo:
  """Output shapes of the networks, for building extra modules: (feature_map, logits) each."""
  student: tuple[jax.ShapeDtypeStruct, jax.ShapeDtypeStruct]
  teachers: tuple[tuple[jax.ShapeDtypeStruct, jax.ShapeDtypeStruct], ...]


@dataclasses.dataclass(frozen=True)
class StepInfo:
  """Where training is: the global step and the 1-based epoch (as mdistiller counts it).

  Also what a loss may need besides parameters: the epoch length (for schedules a method
  runs itself) and the method's own state (`Method.init_state`, read-only in `loss`).
  """
  step: jax.Array
  epoch: jax.Array
  steps_per_epoch: int = 1
  method_state: PyTree = None


def apply_model(module: nn.Module, params: PyTree, batch_stats: PyTree, images: jax.Array,
                train: bool) -> tuple[tuple[jax.Array, jax.Array], PyTree]:
  """Runs a model; returns ((feature_map, logits), batch_stats), updated when training."""
  variables = {"params": params}
  if batch_stats:
    variables["batch_stats"] = batch_stats
  if train and batch_stats:
    outputs, updates = module.apply(variables, images, train=True, mutable=["batch_stats"])
    return outputs, updates["batch_stats"]
  return module.apply(variables, images, train=train), batch_stats


def frozen_teacher_outputs(nets: Networks, params: Mapping[str, PyTree],
                           batch_stats: Mapping[str, PyTree],
                           images: jax.Array) -> tuple[tuple[jax.Array, jax.Array], ...]:
  """(feature_map, logits) of every teacher in eval mode, with no gradient."""
  outputs = []
  for module, t_params, t_stats in zip(nets.teachers, params["teachers"], batch_stats["teachers"]):
    (feature_map, logits), _ = apply_model(module, t_params, t_stats, images, train=False)
    outputs.append((jax.lax.stop_gradient(feature_map), jax.lax.stop_gradient(logits)))
  return tuple(outputs)


def accuracy(logits: jax.Array, labels: jax.Array) -> jax.Array:
  return jnp.mean(jnp.argmax(logits, axis=-1) == labels)


class Method(abc.ABC):
  """A distillation method, registered with `@methods.register(name)`, which sets `name`.

  Subclasses set `teacher_mode` and define `loss`; the methods that compare logits only
  subclass `logit_method.LogitMethod`, which defines `loss` around their `logit_loss`.
  """

  name: str = ""
  teacher_mode: TeacherMode = TeacherMode.NONE
  multi_teacher: bool = False  # True if the method accepts several teachers.

  def __init__(self, section: ml_collections.ConfigDict | None, run_info: RunInfo):
    """`section`: the method's config section `config.<name>` (None: all defaults)."""
    self.hparams = self.resolve_hparams(section)
    self.run_info = run_info

  @classmethod
  def resolve_hparams(cls, section: ml_collections.ConfigDict | None) -> ml_collections.ConfigDict:
    """The method's defaults, overridden by `config.<name>`; unknown or mistyped fields raise."""
    hparams = cls.default_config()
    for key, value in (section or {}).items():
      if key not in hparams:
        raise ValueError(f"config.{cls.name}.{key} is not a setting of method '{cls.name}'; "
                         f"valid: {', '.join(sorted(hparams))}{did_you_mean(key, hparams)}")
      default = hparams[key]
      if isinstance(default, bool) != isinstance(value, bool) or (
          isinstance(default, (int, float)) and not isinstance(value, type(default) | int)) or (
              isinstance(default, str) and not isinstance(value, str)):
        raise ValueError(f"config.{cls.name}.{key} must be a {type(default).__name__}, "
                         f"got {value!r}")
      hparams[key] = float(value) if isinstance(default, float) else value
    return hparams

  @classmethod
  def default_config(cls) -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict()

  @classmethod
  def traced_settings(cls) -> tuple[str, ...]:
    """The numeric settings the loss only does arithmetic with, so that they may be traced."""
    return ()

  def with_settings(self, values: Mapping[str, jax.Array]) -> "Method":
    """This method with `values` (of `traced_settings`, traced or not) as its settings."""
    sweepable = ", ".join(self.traced_settings()) or "nothing"
    unknown = sorted(set(values) - set(self.hparams))
    if unknown:
      raise ValueError(f"config.sweep: {self.name}.{unknown[0]} is not a setting of method "
                       f"'{self.name}'; it can sweep {sweepable}"
                       f"{did_you_mean(unknown[0], self.traced_settings())}")
    untraced = set(values) - set(self.traced_settings())
    if untraced:
      raise ValueError(f"config.sweep: {self.name}.{', '.join(sorted(untraced))} cannot be "
                       f"traced (it changes the compiled code: train separate runs); "
                       f"{self.name} can sweep {sweepable}")
    method = copy.copy(self)
    method.hparams = ml_collections.ConfigDict(dict(self.hparams.to_dict(), **values))
    return method

  @classmethod
  def ranges(cls) -> dict[str, Range]:
    """The valid range of each numeric setting of `default_config()` (every one is declared)."""
    return {}

  def validate(self) -> None:
    """Raises ValueError, saying what to fix, when the method's settings are unusable."""
    check_ranges(f"config.{self.name}", self.hparams, self.ranges())
    if self.teacher_mode is TeacherMode.NONE:
      return
    num_teachers = len(self.run_info.teacher_models)
    if num_teachers == 0:
      raise ValueError(f"method '{self.name}' needs a teacher: set --config.teacher_model "
                       "and --config.teacher_checkpoint")
    if num_teachers > 1 and not self.multi_teacher:
      raise ValueError(f"method '{self.name}' takes one teacher, got {num_teachers} in "
                       f"config.teacher_model='{','.join(self.run_info.teacher_models)}'")

  def init_extra(self, rng: jax.Array, nets: Networks,
                 shapes: ShapeInfo) -> tuple[nn.Module | None, PyTree, PyTree]:
    """Builds the method's extra module; returns (module, params, batch_stats)."""
    del rng, nets, shapes
    return None, {}, {}

  @abc.abstractmethod
  def loss(self, nets: Networks, params: Mapping[str, PyTree], batch_stats: Mapping[str, PyTree],
           batch: Mapping[str, jax.Array], rng: jax.Array,
           step_info: StepInfo) -> tuple[jax.Array, tuple[PyTree, Metrics]]:
    """Returns (loss, (new batch_stats, metrics)); `params` is what gradients are taken of."""

  def trainable(self, params: Mapping[str, PyTree]) -> dict[str, PyTree]:
    """The groups of `params` that the main update takes gradients of and steps: `student`
    and `extra`, and `teachers` when `teacher_mode` is TRAINABLE."""
    groups = student_trainable(params)
    if self.teacher_mode is TeacherMode.TRAINABLE:
      groups["teachers"] = params["teachers"]
    return groups

  def init_optimizer_states(self, params: Mapping[str, PyTree],
                            optimizers: Optimizers) -> tuple[PyTree, PyTree]:
    """(student_opt_state, teacher_opt_state): the student optimizer's over `student` and
    `extra`; the teacher optimizer's over `teachers` when they train, else an empty one."""
    teacher_tx = (optimizers.teacher if self.teacher_mode is TeacherMode.TRAINABLE
                  else optax.set_to_zero())
    return optimizers.student.init(student_trainable(params)), teacher_tx.init(params["teachers"])

  def apply_gradients(self, state, grads: Mapping[str, PyTree],
                      batch_stats: Mapping[str, PyTree], optimizers: Optimizers):
    """The main update: `grads` (of `trainable(state.params)`) through the optimizers of
    `init_optimizer_states`, and `batch_stats` (from `loss`) for the groups that train;
    the others keep their parameters and statistics."""
    updates, student_opt_state = optimizers.student.update(
        student_trainable(grads), state.student_opt_state, student_trainable(state.params))
    params = dict(state.params, **optax.apply_updates(student_trainable(state.params), updates))
    teacher_opt_state = state.teacher_opt_state
    if self.teacher_mode is TeacherMode.TRAINABLE:
      teacher_updates, teacher_opt_state = optimizers.teacher.update(
          grads["teachers"], state.teacher_opt_state, state.params["teachers"])
      params["teachers"] = optax.apply_updates(state.params["teachers"], teacher_updates)
    return state.replace(
        params=params, batch_stats=dict(state.batch_stats, **{g: batch_stats[g] for g in grads}),
        student_opt_state=student_opt_state, teacher_opt_state=teacher_opt_state)

  def init_state(self, params: Mapping[str, PyTree], batch_stats: Mapping[str, PyTree],
                 optimizers: Optimizers) -> PyTree:
    """State the method keeps across steps besides parameters (e.g. an anchor, an optimizer)."""
    del params, batch_stats, optimizers
    return {}

  def post_update(self, nets: Networks, state, batch: Mapping[str, jax.Array], rng: jax.Array,
                  step_info: StepInfo, optimizers: Optimizers) -> tuple[Any, Metrics]:
    """A second update inside the same step, after the main one (ATSC's head update)."""
    del nets, batch, rng, step_info, optimizers
    return state, {}

  def student_checkpoint(self) -> str:
    """The checkpoint the student starts from ('' = from scratch): `config.student_checkpoint`."""
    return self.run_info.student_checkpoint

  def export_variables(self, state) -> PyTree:
    """What a finished run exports as its model: the student's variables."""
    return {"params": state.params["student"], "batch_stats": state.batch_stats["student"]}

  def predict(self, nets: Networks, params: Mapping[str, PyTree],
              batch_stats: Mapping[str, PyTree], images: jax.Array) -> jax.Array:
    """Logits that evaluation scores: the student's own classifier, in eval mode."""
    (_, logits), _ = apply_model(nets.student, params["student"], batch_stats["student"],
                                 images, train=False)
    return logits
