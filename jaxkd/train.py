"""`train_and_evaluate(config, workdir)`: one run, or a pipeline of runs, from a config.

The trainer knows no method by name: the method named by `config.method` supplies
its loss, its extra modules and its predictor (see `jaxkd.methods.base`).
Notebooks call `train_and_evaluate` directly; `python -m jaxkd.main` wraps it.
"""

import dataclasses
import math
import os
import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import optax
from absl import logging

from jaxkd import (checkpoint, config_schema, config_validation, data, methods, model_loading,
                   models, optim, pipeline, reporting)
from jaxkd import step as step_lib
from jaxkd.methods import base
from jaxkd.state import DistillState, student_trainable

PyTree = Any


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Trains and evaluates as `config` says, in `workdir`; returns the summary it writes.

  A run resumes from the latest checkpoint in `workdir`. A pipeline config runs its
  stages in order, each in `workdir/<stage>`, skipping the stages already finished.
  """
  os.makedirs(workdir, exist_ok=True)
  if config_schema.is_pipeline(config):
    return pipeline.run_stages(config, workdir, train_one_run)
  return train_one_run(config, workdir)


@dataclasses.dataclass
class _Run:
  """What a run is made of once built: networks, state, method, and the compiled steps."""
  method: base.Method
  nets: base.Networks
  state: DistillState
  train_step: Any
  student_eval_step: Any
  teacher_eval_steps: tuple[Any, ...]
  student_normalization: dict[str, list[float]]


def _compute_dtype(config: ml_collections.ConfigDict):
  return jnp.bfloat16 if config.half_precision else jnp.float32


def _output_shapes(module, params, batch_stats, image_shape):
  return jax.eval_shape(
      lambda p, s: base.apply_model(module, p, s, jnp.zeros((2, *image_shape)), train=False)[0],
      params, batch_stats)


def build_run(config: ml_collections.ConfigDict, info: "data.DatasetInfo", steps_per_epoch: int,
              mesh) -> tuple[_Run, tuple[dict, ...]]:
  """Models, initial state (teachers loaded) and the jit-compiled steps of a run."""
  method = methods.create_method(config)
  dtype = _compute_dtype(config)

  def make(name):
    return models.create_model(name, info.num_classes, dtype=dtype, conv_impl=config.conv_impl)

  student = make(config.student_model)
  key = jax.random.key(config.seed)
  student_key, extra_key, state_key = jax.random.split(key, 3)
  student_checkpoint = method.student_checkpoint()
  student_description = {}
  if student_checkpoint:
    student, student_params, student_stats, student_description = model_loading.load_model(
        student, config.student_model, student_checkpoint, info, mesh, student_key)
    logging.info("Student '%s' starts from %s.", config.student_model, student_checkpoint)
  else:
    student_params, student_stats = model_loading.init_variables(student, student_key,
                                                                 info.image_shape)
  teachers, teacher_params, teacher_stats, descriptions = (), (), (), ()
  if method.teacher_mode is not base.TeacherMode.NONE:
    loaded = [model_loading.load_model(make(name), name, path, info, mesh, student_key)
              for name, path in zip(config_validation.split_names(config.teacher_model),
                                    config_validation.split_names(config.teacher_checkpoint))]
    teachers, teacher_params, teacher_stats, descriptions = map(tuple, zip(*loaded))
  shapes = base.ShapeInfo(
      student=_output_shapes(student, student_params, student_stats, info.image_shape),
      teachers=tuple(_output_shapes(t, p, s, info.image_shape)
                     for t, p, s in zip(teachers, teacher_params, teacher_stats)))
  extra, extra_params, extra_stats = method.init_extra(
      extra_key, base.Networks(student=student, teachers=teachers), shapes)
  nets = base.Networks(student=student, teachers=teachers, extra=extra)
  params = {"student": student_params, "teachers": teacher_params, "extra": extra_params}
  batch_stats = {"student": student_stats, "teachers": teacher_stats, "extra": extra_stats}

  num_epochs = config.num_epochs
  student_tx = optim.create_optimizer(config.optimizer, steps_per_epoch, num_epochs)
  teacher_tx = (optim.create_optimizer(config.teacher_optimizer, steps_per_epoch, num_epochs)
                if method.teacher_mode is base.TeacherMode.TRAINABLE else optax.set_to_zero())
  state = DistillState(
      step=jnp.zeros((), jnp.int32), params=params, batch_stats=batch_stats,
      student_opt_state=student_tx.init(student_trainable(params)),
      teacher_opt_state=teacher_tx.init(params["teachers"]),
      method_state=method.init_state(params, batch_stats),
      rng=jax.random.key_data(state_key))
  state = jax.device_put(state, step_lib.replicated_sharding(mesh))

  learning_rate = optim.learning_rate_schedule(config.optimizer, steps_per_epoch, num_epochs)
  train_step = step_lib.make_train_step(method, nets, student_tx, teacher_tx, learning_rate,
                                        steps_per_epoch, mesh)
  student_eval = step_lib.make_eval_step(
      lambda p, s, x: method.predict(nets, p, s, x), mesh)
  teacher_evals = tuple(
      step_lib.make_eval_step(
          lambda p, s, x, i=i: base.apply_model(
              nets.teachers[i], p["teachers"][i], s["teachers"][i], x, train=False)[0][1], mesh)
      for i in range(len(teachers)))
  run = _Run(method=method, nets=nets, state=state, train_step=train_step,
             student_eval_step=student_eval, teacher_eval_steps=teacher_evals,
             student_normalization=model_loading.input_normalization(student_description, info))
  return run, descriptions


def _parameter_distance(params: PyTree, initial: PyTree) -> float:
  """‖θ − θ₀‖ / ‖θ₀‖ over all leaves: how far a trained teacher moved from its start."""
  moved = sum(float(jnp.sum((jnp.asarray(p) - q) ** 2))
              for p, q in zip(jax.tree.leaves(params), jax.tree.leaves(initial)))
  start = sum(float(jnp.sum(jnp.asarray(q) ** 2)) for q in jax.tree.leaves(initial))
  return math.sqrt(moved / start)


def _evaluation_point(run: _Run, state: DistillState, inputs, initial_teachers: PyTree | None,
                      step: int, steps_per_epoch: int) -> dict[str, float]:
  """Accuracy and loss on every evaluation split at `step`; for a teacher that trains, its
  test accuracy and its relative distance from its starting weights."""
  point = {"step": step, "epoch": step / steps_per_epoch}
  for split in inputs.eval_splits:
    result = step_lib.evaluate(run.student_eval_step, state.params, state.batch_stats,
                               inputs.eval_batches(split))
    point[f"{split}/accuracy"], point[f"{split}/loss"] = result["accuracy"], result["loss"]
  if initial_teachers is not None:
    for i, eval_step in enumerate(run.teacher_eval_steps):
      result = step_lib.evaluate(eval_step, state.params, state.batch_stats,
                                 inputs.eval_batches())
      point[f"teacher/{i}/test_accuracy"] = result["accuracy"]
      point[f"teacher/{i}/relative_distance"] = _parameter_distance(
          state.params["teachers"][i], initial_teachers[i])
  return point


def _stop_step(config: ml_collections.ConfigDict, steps_per_epoch: int) -> tuple[int, int]:
  total = config.num_epochs * steps_per_epoch
  return total, (min(total, config.max_steps) if config.max_steps > 0 else total)


def train_one_run(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """One training run in `workdir`, resumed from its latest checkpoint if there is one."""
  wall_start = time.time()
  config_validation.validate(config)
  mesh = step_lib.create_mesh()
  inputs = data.create_input(config, mesh)
  info, steps_per_epoch = inputs.info, inputs.steps_per_epoch
  total_steps, stop_step = _stop_step(config, steps_per_epoch)
  run, teacher_descriptions = build_run(config, info, steps_per_epoch, mesh)
  writer = reporting.create_writer(workdir)
  store = checkpoint.CheckpointStore(workdir, config.keep_checkpoints)

  state = run.state
  progress = {"best_step": None, "best_selection_accuracy": None, "test_accuracy_at_best": None,
              "last_test_accuracy": None, "teacher_test_accuracy": [], "history": [],
              "train_seconds": 0.0, "train_images": 0}
  selection_split = (data.VALIDATION_SPLIT if data.VALIDATION_SPLIT in inputs.eval_splits
                     else data.TEST_SPLIT)
  initial_teachers = (jax.device_get(state.params["teachers"])
                      if run.method.teacher_mode is base.TeacherMode.TRAINABLE else None)
  if store.latest_step() is not None:
    state, progress = store.restore_latest(state)
    logging.info("Resumed from step %d of %s.", int(state.step), workdir)
  else:
    for i, eval_step in enumerate(run.teacher_eval_steps):
      result = step_lib.evaluate(eval_step, state.params, state.batch_stats, inputs.eval_batches())
      progress["teacher_test_accuracy"].append(result["accuracy"])
      logging.info("Teacher %d (%s) test accuracy before step 0: %.4f", i,
                   teacher_descriptions[i].get("model"), result["accuracy"])
      writer.write_scalars(0, {f"teacher/{i}/test_accuracy": result["accuracy"]})

  start_step = int(state.step)
  eval_every = config.eval_every_steps or config.eval_every_epochs * steps_per_epoch
  checkpoint_every = config.checkpoint_every_steps
  batches = inputs.train_batches(start_step)
  window, window_start, window_steps = None, time.time(), 0
  for step in range(start_step, stop_step):
    state, metrics = run.train_step(state, next(batches))
    done = step + 1
    if step == start_step:  # The first step compiles: keep it out of the throughput.
      jax.block_until_ready(state)
      window_start = time.time()
    else:
      window = metrics if window is None else jax.tree.map(jnp.add, window, metrics)
      window_steps += 1
    if window_steps and (done % config.log_every_steps == 0 or done == stop_step):
      means = {k: float(v) / window_steps for k, v in jax.device_get(window).items()}
      elapsed = time.time() - window_start
      if not math.isfinite(means["loss"]):
        raise FloatingPointError(
            f"the loss became {means['loss']} between steps {done - window_steps} and {done}: "
            f"lower config.optimizer.learning_rate or check the data; the run resumes from the "
            f"last good checkpoint (step {store.latest_step()}) in {workdir}")
      progress["train_seconds"] += elapsed
      progress["train_images"] += window_steps * config.batch_size
      eta_min = (stop_step - done) * elapsed / window_steps / 60
      writer.write_scalars(done, {**{f"train/{k}": v for k, v in means.items()},
                                  "perf/images_per_s": window_steps * config.batch_size / elapsed,
                                  "perf/eta_min": eta_min})
      window, window_start, window_steps = None, time.time(), 0
    if done % eval_every == 0 or done == stop_step:
      point = _evaluation_point(run, state, inputs, initial_teachers, done, steps_per_epoch)
      writer.write_scalars(done, {k: v for k, v in point.items() if k not in ("step", "epoch")})
      progress["history"].append(point)
      progress["last_test_accuracy"] = point["test/accuracy"]
      selection = point[f"{selection_split}/accuracy"]
      is_best = (progress["best_selection_accuracy"] is None
                 or selection > progress["best_selection_accuracy"])
      if is_best:
        progress.update(best_selection_accuracy=selection, best_step=done,
                        test_accuracy_at_best=point["test/accuracy"])
      store.save(done, state, progress, is_best=is_best)
      window_start = time.time()  # Evaluation is not training time.
    elif checkpoint_every and done % checkpoint_every == 0:
      store.save(done, state, progress, is_best=False)
  writer.flush()
  store.close()

  checkpoint.export_model(
      workdir, run.method.export_variables(state),
      {"model": config.student_model, "num_classes": info.num_classes, "dataset": config.dataset,
       "method": config.method, "test_accuracy": progress["last_test_accuracy"],
       "step": int(state.step), **run.student_normalization})
  summary = {
      "method": config.method, "dataset": config.dataset, "student_model": config.student_model,
      "teacher_model": config.teacher_model,
      "final_test_accuracy": progress["last_test_accuracy"],
      "best_selected_by": selection_split, "best_step": progress["best_step"],
      f"best_{selection_split}_accuracy": progress["best_selection_accuracy"],
      "test_accuracy_at_best": progress["test_accuracy_at_best"],
      "teacher_test_accuracy": progress["teacher_test_accuracy"],
      "history": progress["history"],
      "steps": int(state.step), "total_steps": total_steps, "steps_per_epoch": steps_per_epoch,
      "finished": int(state.step) >= total_steps,
      "images_per_s": (progress["train_images"] / progress["train_seconds"]
                       if progress["train_seconds"] else None),
      "wall_time_s": time.time() - wall_start, "hardware": reporting.hardware_description(),
      "config": config.to_dict(),
  }
  reporting.write_summary(workdir, summary)
  logging.info("Run finished: final test accuracy %s; test accuracy %s at the best %s step %s.",
               summary["final_test_accuracy"], summary["test_accuracy_at_best"], selection_split,
               summary["best_step"])
  return summary
