"""`train_and_evaluate(config, workdir)`: one run, or a pipeline of runs, from a config.

The trainer knows no method by name: the method named by `config.method` supplies
its loss, its extra modules and its predictor (see `jaxkd.methods.base`).
Notebooks call `train_and_evaluate` directly; `python -m jaxkd.main` wraps it.
"""

import dataclasses
import math
import os
import signal
import threading
import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from absl import logging
from jax.experimental import multihost_utils

from jaxkd import (checkpoint, config_schema, config_validation, data, methods, model_loading,
                   models, optim, pipeline, reporting, run_record)
from jaxkd import step as step_lib
from jaxkd.methods import base
from jaxkd.state import DistillState, student_trainable

PyTree = Any


class TrainingInterrupted(KeyboardInterrupt):
  """SIGTERM or SIGINT stopped training after a checkpoint was saved; rerunning resumes."""


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Trains and evaluates as `config` says, in `workdir`; returns the summary it writes.

  A run resumes from the latest good checkpoint in `workdir`. A pipeline config runs its
  stages in order, each in `workdir/<stage>`, skipping the stages already finished.
  Raises run_record.StaleRunError when `workdir` holds results of another config or teacher,
  FloatingPointError at the first non-finite step (nothing non-finite is saved), and
  TrainingInterrupted after SIGTERM/SIGINT, once a checkpoint is saved.
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


def current_record(config: ml_collections.ConfigDict) -> dict[str, Any]:
  """The record (`run_record.make_record`) of a run of `config` from the exports it names now."""
  method = methods.create_method(config)
  teachers = (config_validation.split_names(config.teacher_checkpoint)
              if method.teacher_mode is not base.TeacherMode.NONE else ())
  inputs = run_record.input_fingerprints(teachers, method.student_checkpoint())
  return run_record.make_record(config, inputs)


def _checked_record(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """The run's record, to write to `workdir` once it resumes; raises run_record.StaleRunError
  when `workdir` holds results of another config or teacher.

  After a divergence (`diverged_at_step`) the changes are the fix, and are kept in the
  record's `amendments`. With `restart_stages='run'` the old results are moved aside to
  `<workdir>.replaced-<time>` and the run starts again.
  """
  if config.restart_stages not in ("", "run"):
    raise ValueError(f"config.restart_stages='{config.restart_stages}': a single run takes "
                     "'run' (retrain here when the config changed) or ''")
  current = current_record(config)
  recorded = run_record.read_record(workdir)
  changes = run_record.record_changes(recorded, current) if recorded else []
  if changes and checkpoint.has_results(workdir):
    if recorded["diverged_at_step"] is not None:
      logging.warning("Resuming a run that diverged at step %d with: %s",
                      recorded["diverged_at_step"], "; ".join(changes))
      current["amendments"] = recorded["amendments"] + [
          {"diverged_at_step": recorded["diverged_at_step"], "changes": changes}]
    elif config.restart_stages == "run":
      moved = checkpoint.move_aside(workdir, "replaced")
      logging.warning("Config changed (%s): the old run is moved to %s; training again.",
                      "; ".join(changes), moved)
      os.makedirs(workdir, exist_ok=True)
    else:
      raise run_record.StaleRunError(
          f"{workdir} holds a run of another config ({'; '.join(changes)}): use a new "
          "--workdir, or --config.restart_stages=run (a pipeline: the stage names) to retrain "
          "it here (the old run is moved aside)")
  elif recorded and not changes:
    current = dict(recorded, diverged_at_step=None)  # Set again if it diverges again.
  return current


class _StopSignals:
  """SIGTERM and SIGINT during training: noted by a handler, acted on at a step boundary.

  Several processes agree on that step: JAX's preemption service hears SIGTERM and picks a
  step itself (checked every step, locally); a SIGINT is shared at the boundaries where
  the trainer syncs anyway (log, evaluation, checkpoint). The handlers in place before are
  restored on exit; a second signal meets the previous handler (e.g. KeyboardInterrupt).
  """

  def __init__(self):
    self.received = None
    self._previous = {}

  @staticmethod
  def _preemption_service() -> bool:
    return jax.process_count() > 1 and jax.config.jax_enable_preemption_service

  def __enter__(self) -> "_StopSignals":
    if threading.current_thread() is not threading.main_thread():
      return self  # Handlers can only be set from the main thread.
    signals = (signal.SIGINT,) if self._preemption_service() else (signal.SIGTERM, signal.SIGINT)
    for signum in signals:
      if signal.getsignal(signum) is not None:  # None: a handler not set from Python.
        self._previous[signum] = signal.signal(signum, self._note)
    return self

  def _note(self, signum, _) -> None:
    self.received = signal.Signals(signum).name
    signal.signal(signum, self._previous[signum])

  def __exit__(self, *_) -> None:
    for signum, handler in self._previous.items():
      signal.signal(signum, handler)

  def stop_after(self, done: int, at_boundary: bool) -> bool:
    """Whether every process stops after step `done` (called by all, at every step)."""
    if jax.process_count() == 1:
      return self.received is not None
    if self._preemption_service() and multihost_utils.reached_preemption_sync_point(done):
      self.received = self.received or "SIGTERM"
      return True
    if not at_boundary:
      return False
    return bool(multihost_utils.process_allgather(np.int32(self.received is not None)).any())


@jax.jit
def _observe(health: dict, window: dict, metrics: dict, into_window: jax.Array
             ) -> tuple[dict, dict]:
  """Adds a step's metrics to the window (if `into_window`), and notes in `health` the first
  step whose loss terms or state were not finite, with what was not: on the device."""
  metrics = dict(metrics)
  nonfinite = metrics.pop(step_lib.NONFINITE)
  step = health["step"] + 1
  first = (health["first_bad_step"] < 0) & jnp.any(jnp.stack(list(nonfinite.values())))
  health = {"step": step, "first_bad_step": jnp.where(first, step, health["first_bad_step"]),
            "nonfinite": jax.tree.map(lambda old, new: jnp.where(first, new, old),
                                      health["nonfinite"], nonfinite)}
  window = jax.tree.map(lambda total, value: jnp.where(into_window, total + value, total),
                        window, metrics)
  return health, window


class _Tracker:
  """The device-side running sums of the train metrics and the first non-finite step: no
  host sync per step; `check_finite` and `means` fetch them at boundaries."""

  def __init__(self, start_step: int):
    self.health, self.window, self.window_steps = None, None, 0
    self._start_step = start_step
    self._into_window = {}  # {bool: the device scalar}, made once.

  def add(self, metrics: dict, into_window: bool) -> None:
    if self.health is None:
      self.health = {"step": jnp.int32(self._start_step), "first_bad_step": jnp.int32(-1),
                     "nonfinite": jax.tree.map(jnp.zeros_like, metrics[step_lib.NONFINITE])}
      self.window = {k: jnp.zeros_like(v) for k, v in metrics.items()
                     if k != step_lib.NONFINITE}
    flag = self._into_window.setdefault(into_window, jnp.bool_(into_window))
    self.health, self.window = _observe(self.health, self.window, metrics, flag)
    self.window_steps += int(into_window)

  def first_non_finite(self) -> tuple[int, list[str]] | None:
    """(step, names of the non-finite loss terms and state fields) of the first bad step."""
    if self.health is None:
      return None
    host = jax.device_get({k: self.health[k] for k in ("first_bad_step", "nonfinite")})
    if host["first_bad_step"] < 0:
      return None
    return int(host["first_bad_step"]), [k for k, bad in host["nonfinite"].items() if bad]

  def take_means(self) -> dict[str, float]:
    """The window's mean metrics; the window starts again."""
    means = {k: float(v) / self.window_steps for k, v in jax.device_get(self.window).items()}
    self.window = jax.tree.map(jnp.zeros_like, self.window)
    self.window_steps = 0
    return means


def _raise_if_non_finite(tracker: _Tracker, store: checkpoint.CheckpointStore,
                         record: dict, workdir: str) -> None:
  """Stops the run at its first non-finite step (before anything is saved after it),
  marking the workdir's record so that a rerun with a fixed config resumes."""
  bad = tracker.first_non_finite()
  if bad is None:
    return
  step, names = bad
  run_record.write_record(workdir, dict(record, diverged_at_step=step))
  last = store.latest_step()
  resume = f"resumes from step {last}" if last is not None else "starts again from step 0"
  raise FloatingPointError(
      f"step {step} made {', '.join(names)} non-finite (nothing after step {step - 1} is "
      f"saved): lower config.optimizer.learning_rate or check the data, then rerun with the "
      f"same --workdir={workdir}: it {resume}")


def _resume(store: checkpoint.CheckpointStore, state: DistillState, progress: dict,
            workdir: str, model: str) -> tuple[DistillState, dict, bool]:
  """The latest good checkpoint's state and progress, and whether there was one."""
  restored = store.restore_latest(state, model)
  if restored is None:
    return state, progress, False
  logging.info("Resumed from step %d of %s.", int(restored[0].step), workdir)
  return restored[0], restored[1], True


def train_one_run(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """One training run in `workdir`, resumed from its latest good checkpoint if there is one."""
  wall_start = time.time()
  config_validation.validate(config)
  record = _checked_record(config, workdir)
  mesh = step_lib.create_mesh()
  inputs = data.create_input(config, mesh)
  info, steps_per_epoch = inputs.info, inputs.steps_per_epoch
  total_steps, stop_step = _stop_step(config, steps_per_epoch)
  run, teacher_descriptions = build_run(config, info, steps_per_epoch, mesh)
  writer = reporting.create_writer(workdir)
  store = checkpoint.CheckpointStore(workdir, config.keep_checkpoints)

  progress = {"best_step": None, "best_selection_accuracy": None, "test_accuracy_at_best": None,
              "last_test_accuracy": None, "teacher_test_accuracy": [], "history": [],
              "train_seconds": 0.0, "train_images": 0}
  selection_split = (data.VALIDATION_SPLIT if data.VALIDATION_SPLIT in inputs.eval_splits
                     else data.TEST_SPLIT)
  initial_teachers = (jax.device_get(run.state.params["teachers"])
                      if run.method.teacher_mode is base.TeacherMode.TRAINABLE else None)
  try:
    state, progress, resumed = _resume(store, run.state, progress, workdir,
                                       f"the config's '{config.student_model}'")
    run_record.write_record(workdir, record)
    if not resumed:
      for i, eval_step in enumerate(run.teacher_eval_steps):
        result = step_lib.evaluate(eval_step, state.params, state.batch_stats,
                                   inputs.eval_batches())
        progress["teacher_test_accuracy"].append(result["accuracy"])
        logging.info("Teacher %d (%s) test accuracy before step 0: %.4f", i,
                     teacher_descriptions[i].get("model"), result["accuracy"])
        writer.write_scalars(0, {f"teacher/{i}/test_accuracy": result["accuracy"]})
    with _StopSignals() as stops:
      state = _train_steps(config, run, state, progress, inputs, store, writer, stops,
                           initial_teachers, record, workdir, selection_split, stop_step)
  finally:
    writer.flush()
    store.close()

  checkpoint.export_model(
      workdir, run.method.export_variables(state),
      {"model": config.student_model, "num_classes": info.num_classes, "dataset": config.dataset,
       "method": config.method, "test_accuracy": progress["last_test_accuracy"],
       "step": int(state.step), "run": run_record.record_hash(record),
       **run.student_normalization})
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
      "config": config.to_dict(), "config_amendments": record["amendments"],
  }
  reporting.write_summary(workdir, summary)
  logging.info("Run finished: final test accuracy %s; test accuracy %s at the best %s step %s.",
               summary["final_test_accuracy"], summary["test_accuracy_at_best"], selection_split,
               summary["best_step"])
  return summary


def _train_steps(config, run: _Run, state: DistillState, progress: dict, inputs,
                 store: checkpoint.CheckpointStore, writer, stops: _StopSignals,
                 initial_teachers, record: dict, workdir: str, selection_split: str,
                 stop_step: int) -> DistillState:
  """Trains from `state` to `stop_step`: logs, evaluates and saves at the boundaries the
  config sets, each after checking that no step so far was non-finite; after SIGTERM or
  SIGINT, saves at the next step and raises TrainingInterrupted."""
  steps_per_epoch = inputs.steps_per_epoch
  start_step = int(state.step)
  eval_every = config.eval_every_steps or config.eval_every_epochs * steps_per_epoch
  checkpoint_every = config.checkpoint_every_steps
  batches = inputs.train_batches(start_step)
  tracker = _Tracker(start_step)
  window_start = time.time()
  for step in range(start_step, stop_step):
    state, metrics = run.train_step(state, next(batches))
    done = step + 1
    tracker.add(metrics, into_window=step != start_step)
    if step == start_step:  # The first step compiles: keep it out of the throughput.
      jax.block_until_ready(state)
      window_start = time.time()
    log = tracker.window_steps and (done % config.log_every_steps == 0 or done == stop_step)
    evaluate = done % eval_every == 0 or done == stop_step
    save = evaluate or bool(checkpoint_every and done % checkpoint_every == 0)
    interrupted = stops.stop_after(done, bool(log or save))
    if not (log or save or interrupted):
      continue
    _raise_if_non_finite(tracker, store, record, workdir)
    if log:
      _log_window(tracker, progress, writer, config.batch_size, done, stop_step,
                  steps_per_epoch, window_start)
      window_start = time.time()
    if evaluate:
      _evaluate_and_save(run, state, inputs, initial_teachers, progress, store, writer,
                         selection_split, done)
      window_start = time.time()  # Evaluation is not training time.
    elif save or interrupted:
      store.save(done, state, progress, is_best=False)
    if interrupted:
      raise TrainingInterrupted(
          f"{stops.received} stopped training after step {done}: checkpoint {done} is saved in "
          f"{os.path.join(workdir, 'checkpoints')}; rerun the same command to resume from it")
  return state


def _log_window(tracker: _Tracker, progress: dict, writer, batch_size: int, done: int,
                stop_step: int, steps_per_epoch: int, window_start: float) -> None:
  """Writes the mean train metrics since the last log, the throughput and the ETA."""
  steps = tracker.window_steps
  means = tracker.take_means()
  elapsed = time.time() - window_start
  progress["train_seconds"] += elapsed
  progress["train_images"] += steps * batch_size
  images_per_s = steps * batch_size / elapsed
  eta_s = (stop_step - done) * elapsed / steps
  writer.write_scalars(done, {**{f"train/{k}": v for k, v in means.items()},
                              "perf/images_per_s": images_per_s, "perf/eta_min": eta_s / 60})
  accuracy = means.get("train/accuracy")
  logging.info("step %d/%d (epoch %.2f): loss %.4f%s, %.0f images/s, ETA %s", done, stop_step,
               done / steps_per_epoch, means["loss"],
               "" if accuracy is None else f", train accuracy {accuracy:.4f}", images_per_s,
               time.strftime("%H:%M:%S", time.gmtime(eta_s)))


def _evaluate_and_save(run: _Run, state: DistillState, inputs, initial_teachers, progress: dict,
                       store: checkpoint.CheckpointStore, writer, selection_split: str,
                       done: int) -> None:
  """Evaluates at step `done`, notes the best step so far, and saves (as best too if so)."""
  point = _evaluation_point(run, state, inputs, initial_teachers, done, inputs.steps_per_epoch)
  writer.write_scalars(done, {k: v for k, v in point.items() if k not in ("step", "epoch")})
  progress["history"].append(point)
  progress["last_test_accuracy"] = point["test/accuracy"]
  logging.info("step %d (epoch %.2f): %s", done, point["epoch"], ", ".join(
      f"{name} {value:.4f}" for name, value in point.items() if name.endswith("accuracy")))
  selection = point[f"{selection_split}/accuracy"]
  is_best = (progress["best_selection_accuracy"] is None
             or selection > progress["best_selection_accuracy"])
  if is_best:
    progress.update(best_selection_accuracy=selection, best_step=done,
                    test_accuracy_at_best=point["test/accuracy"])
  store.save(done, state, progress, is_best=is_best)
