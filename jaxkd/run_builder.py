"""`build_run`: a run's networks, initial state (teachers loaded) and compiled steps.

The builder knows no method by name: the method named by `config.method` supplies its extra
modules, its optimizer states, its state and its predictor (`jaxkd.methods.base`). With
`seeds`, the state holds one replica per seed (`jaxkd.replicas`) and the steps map over them.
"""

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
from absl import logging

from jaxkd import config_schema, data, methods, model_loading, models, optim, precision
from jaxkd import replicas
from jaxkd import step as step_lib
from jaxkd.methods import base
from jaxkd.state import DistillState


@dataclasses.dataclass
class Run:
  """What a run is made of once built: networks, state, method, and the compiled steps."""
  method: base.Method
  nets: base.Networks
  state: DistillState
  train_step: Any
  student_eval_step: Any
  teacher_eval_steps: tuple[Any, ...]
  student_normalization: dict[str, list[float]]
  # Replicated runs: the replica axes of `state` (`step.state_axes`); None for a single run.
  state_axes: DistillState | None = None
  num_replicas: int = 1
  mesh: Any = None
  shared_batch: bool = True  # One batch serves every replica (they share their seed).

  def replica_state(self, state: DistillState, index: int) -> DistillState:
    """Replica `index`'s state, as the single run with its seed holds it."""
    if self.state_axes is None:
      return state
    return self._replica_part(state, index)

  @functools.cached_property
  def _replica_part(self):
    """`replica_state` compiled once for every index. Compiled, it runs as one program in
    every process of a group: taking apart a state split over two processes with eager
    indexing and `device_put` hung them."""
    return jax.jit(lambda state, index: replicas.unstack(state, self.state_axes, index),
                   out_shardings=step_lib.replicated_sharding(self.mesh))

  def stacked_state(self, states: list[DistillState]) -> DistillState:
    """The state of the run from its replicas' states (`replica_state`'s inverse)."""
    if self.state_axes is None:
      return states[0]
    return jax.jit(lambda parts: replicas.stack(parts, self.state_axes),
                   out_shardings=replicas.shardings(self.mesh, self.state_axes))(states)


def _compute_dtype(config: ml_collections.ConfigDict):
  return jnp.bfloat16 if config.half_precision else precision.full_precision()


def _output_shapes(module, params, batch_stats, image_shape):
  return jax.eval_shape(
      lambda p, s: base.apply_model(module, p, s, jnp.zeros((2, *image_shape)), train=False)[0],
      params, batch_stats)


def build_run(config: ml_collections.ConfigDict, info: "data.DatasetInfo", steps_per_epoch: int,
              mesh, seeds: tuple[int, ...] | None = None,
              settings: dict[str, tuple[float, ...]] | None = None
              ) -> tuple[Run, tuple[dict, ...]]:
  """Models, initial state (teachers loaded) and the jit-compiled steps of a run.

  With `seeds` (one per replica, `replicas.replica_runs`), the state holds one replica per
  seed, stacked (`step.state_axes`), each initialised as the single run with that seed
  would be, and the steps map over them; `settings` gives each replica its own values of
  settings of the method's `traced_settings` (`replicas.sweep_values`).
  Each replica loads its own seed's `teacher_checkpoint` (`replicas.with_seed_paths`);
  when these differ (`{seed}` in the path), the replicas hold their own teachers even when
  frozen.
  """
  method = methods.create_method(config)
  dtype = _compute_dtype(config)
  replicated = seeds is not None

  def make(name):
    return models.create_model(name, info.num_classes, dtype=dtype, conv_impl=config.conv_impl)

  student = make(config.student_model)
  replica_seeds = seeds if replicated else (config.seed,)
  keys = [jax.random.split(jax.random.key(seed), 3) for seed in replica_seeds]
  replica_configs = [replicas.with_seed_paths(config, seed) for seed in replica_seeds]
  checkpoints = [replica.teacher_checkpoint for replica in replica_configs]
  own_teachers = len(set(checkpoints)) > 1
  student_checkpoints = [  # A generous teacher starts from its own teacher.
      methods.create_method(replica).student_checkpoint() for replica in replica_configs]
  student_description = {}
  if student_checkpoints[0]:
    loaded_students = {}
    for path in dict.fromkeys(student_checkpoints):
      student_module, *variables, student_description = model_loading.load_model(
          student, config.student_model, path, info, mesh, keys[0][0], role="student")
      loaded_students[path] = tuple(variables)
      logging.info("Student '%s' starts from %s.", config.student_model, path)
    student = student_module
    students = [loaded_students[path] for path in student_checkpoints]
  else:
    students = [model_loading.init_variables(student, key, info.image_shape)
                for key, _, _ in keys]
  teachers, descriptions, replica_teachers = (), (), [((), ())] * len(keys)
  if method.teacher_mode is not base.TeacherMode.NONE:
    loaded = [[model_loading.load_model(make(name), name, path, info, mesh, keys[0][0])
               for name, path in zip(config_schema.split_names(config.teacher_model),
                                     config_schema.split_names(replica_checkpoint))]
              for replica_checkpoint in (checkpoints if own_teachers else checkpoints[:1])]
    teachers, _, _, descriptions = map(tuple, zip(*loaded[0]))
    replica_teachers = [(tuple(params for _, params, _, _ in teacher_set),
                         tuple(stats for _, _, stats, _ in teacher_set)) for teacher_set in loaded]
    replica_teachers *= 1 if own_teachers else len(keys)
  teacher_params, teacher_stats = replica_teachers[0]
  shapes = base.ShapeInfo(
      student=_output_shapes(student, *students[0], info.image_shape),
      teachers=tuple(_output_shapes(t, p, s, info.image_shape)
                     for t, p, s in zip(teachers, teacher_params, teacher_stats)))

  num_epochs = config.num_epochs
  optimizers = base.Optimizers(
      student=optim.create_optimizer(config.optimizer, steps_per_epoch, num_epochs),
      teacher=optim.create_optimizer(config.teacher_optimizer, steps_per_epoch, num_epochs))
  states = []
  for (_, extra_key, state_key), student_vars, teacher_vars in zip(keys, students,
                                                                   replica_teachers):
    (student_params, student_stats), (teacher_params, teacher_stats) = student_vars, teacher_vars
    extra, extra_params, extra_stats = method.init_extra(
        extra_key, base.Networks(student=student, teachers=teachers), shapes)
    params = {"student": student_params, "teachers": teacher_params, "extra": extra_params}
    batch_stats = {"student": student_stats, "teachers": teacher_stats, "extra": extra_stats}
    student_opt_state, teacher_opt_state = method.init_optimizer_states(params, optimizers)
    states.append(DistillState(
        step=jnp.zeros((), jnp.int32), params=params, batch_stats=batch_stats,
        student_opt_state=student_opt_state, teacher_opt_state=teacher_opt_state,
        method_state=method.init_state(params, batch_stats, optimizers),
        rng=jax.random.key_data(state_key)))
  nets = base.Networks(student=student, teachers=teachers, extra=extra)
  state_axes = step_lib.state_axes(states[0], method, own_teachers) if replicated else None
  state = (jax.device_put(replicas.stack(states, state_axes), replicas.shardings(mesh, state_axes))
           if replicated else jax.device_put(states[0], step_lib.replicated_sharding(mesh)))

  learning_rate = optim.learning_rate_schedule(config.optimizer, steps_per_epoch, num_epochs)
  shared_batch = len(set(seeds or (config.seed,))) == 1
  train_step = step_lib.make_train_step(method, nets, optimizers, learning_rate,
                                        steps_per_epoch, mesh, state_axes, settings,
                                        shared_batch)
  student_eval = step_lib.make_eval_step(
      lambda p, s, x: method.predict(nets, p, s, x), mesh, state_axes)
  teacher_evals = tuple(
      step_lib.make_eval_step(
          lambda p, s, x, i=i: base.apply_model(
              nets.teachers[i], p["teachers"][i], s["teachers"][i], x, train=False)[0][1],
          mesh, state_axes)
      for i in range(len(teachers)))
  run = Run(method=method, nets=nets, state=state, train_step=train_step,
            student_eval_step=student_eval, teacher_eval_steps=teacher_evals,
            student_normalization=model_loading.input_normalization(student_description, info),
            state_axes=state_axes, num_replicas=len(states), mesh=mesh,
            shared_batch=shared_batch)
  return run, descriptions
