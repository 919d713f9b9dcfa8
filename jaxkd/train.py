"""`train_and_evaluate(config, workdir)`: one run, or a pipeline of runs, from a config.

The trainer knows no method by name: the method named by `config.method` supplies
its loss, its extra modules and its predictor (see `jaxkd.methods.base`).
Notebooks call `train_and_evaluate` directly; `python -m jaxkd.main` wraps it.
A replicated run (`config.num_replicas`, `config.seeds`: `jaxkd.replicas`) trains its seeds
in one compiled step; each replica keeps the records, checkpoints and results of the single
run with its seed, in its own directory (a "lane" here).
"""

import dataclasses
import itertools
import math
import os
import time
from typing import Any, Iterator

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging

from jaxkd import (checkpoint, config_schema, config_validation, curves, data, methods,
                   model_loading, models, optim, pipeline, replicas, reporting, run_record)
from jaxkd import step as step_lib
from jaxkd.step_tracker import StepTracker
from jaxkd.stop_signals import StopSignals
from jaxkd.methods import base
from jaxkd.state import DistillState

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
  # Replicated runs: the replica axes of `state` (`step.state_axes`); None for a single run.
  state_axes: DistillState | None = None
  num_replicas: int = 1
  mesh: Any = None

  def replica_state(self, state: DistillState, index: int) -> DistillState:
    """Replica `index`'s state, as the single run with its seed holds it."""
    if self.state_axes is None:
      return state
    return jax.device_put(replicas.unstack(state, self.state_axes, index),
                          step_lib.replicated_sharding(self.mesh))

  def stacked_state(self, states: list[DistillState]) -> DistillState:
    """The state of the run from its replicas' states (`replica_state`'s inverse)."""
    if self.state_axes is None:
      return states[0]
    return jax.device_put(replicas.stack(states, self.state_axes),
                          replicas.shardings(self.mesh, self.state_axes))


def _compute_dtype(config: ml_collections.ConfigDict):
  return jnp.bfloat16 if config.half_precision else jnp.float32


def _output_shapes(module, params, batch_stats, image_shape):
  return jax.eval_shape(
      lambda p, s: base.apply_model(module, p, s, jnp.zeros((2, *image_shape)), train=False)[0],
      params, batch_stats)


def build_run(config: ml_collections.ConfigDict, info: "data.DatasetInfo", steps_per_epoch: int,
              mesh, seeds: tuple[int, ...] | None = None) -> tuple[_Run, tuple[dict, ...]]:
  """Models, initial state (teachers loaded) and the jit-compiled steps of a run.

  With `seeds` (`replicas.replica_seeds`), the state holds one replica per seed, stacked
  (`step.state_axes`), each initialised as the single run with that seed would be, and the
  steps map over them.
  """
  method = methods.create_method(config)
  dtype = _compute_dtype(config)
  replicated = seeds is not None

  def make(name):
    return models.create_model(name, info.num_classes, dtype=dtype, conv_impl=config.conv_impl)

  student = make(config.student_model)
  keys = [jax.random.split(jax.random.key(seed), 3)
          for seed in (seeds if replicated else (config.seed,))]
  student_checkpoint = method.student_checkpoint()
  student_description = {}
  if student_checkpoint:
    student, student_params, student_stats, student_description = model_loading.load_model(
        student, config.student_model, student_checkpoint, info, mesh, keys[0][0])
    logging.info("Student '%s' starts from %s.", config.student_model, student_checkpoint)
    students = [(student_params, student_stats)] * len(keys)
  else:
    students = [model_loading.init_variables(student, key, info.image_shape)
                for key, _, _ in keys]
  teachers, teacher_params, teacher_stats, descriptions = (), (), (), ()
  if method.teacher_mode is not base.TeacherMode.NONE:
    loaded = [model_loading.load_model(make(name), name, path, info, mesh, keys[0][0])
              for name, path in zip(config_schema.split_names(config.teacher_model),
                                    config_schema.split_names(config.teacher_checkpoint))]
    teachers, teacher_params, teacher_stats, descriptions = map(tuple, zip(*loaded))
  shapes = base.ShapeInfo(
      student=_output_shapes(student, *students[0], info.image_shape),
      teachers=tuple(_output_shapes(t, p, s, info.image_shape)
                     for t, p, s in zip(teachers, teacher_params, teacher_stats)))

  num_epochs = config.num_epochs
  optimizers = base.Optimizers(
      student=optim.create_optimizer(config.optimizer, steps_per_epoch, num_epochs),
      teacher=optim.create_optimizer(config.teacher_optimizer, steps_per_epoch, num_epochs))
  states = []
  for (_, extra_key, state_key), (student_params, student_stats) in zip(keys, students):
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
  state_axes = step_lib.state_axes(states[0], method) if replicated else None
  state = (jax.device_put(replicas.stack(states, state_axes), replicas.shardings(mesh, state_axes))
           if replicated else jax.device_put(states[0], step_lib.replicated_sharding(mesh)))

  learning_rate = optim.learning_rate_schedule(config.optimizer, steps_per_epoch, num_epochs)
  train_step = step_lib.make_train_step(method, nets, optimizers, learning_rate,
                                        steps_per_epoch, mesh, state_axes)
  student_eval = step_lib.make_eval_step(
      lambda p, s, x: method.predict(nets, p, s, x), mesh, state_axes)
  teacher_evals = tuple(
      step_lib.make_eval_step(
          lambda p, s, x, i=i: base.apply_model(
              nets.teachers[i], p["teachers"][i], s["teachers"][i], x, train=False)[0][1],
          mesh, state_axes)
      for i in range(len(teachers)))
  run = _Run(method=method, nets=nets, state=state, train_step=train_step,
             student_eval_step=student_eval, teacher_eval_steps=teacher_evals,
             student_normalization=model_loading.input_normalization(student_description, info),
             state_axes=state_axes, num_replicas=len(states), mesh=mesh)
  return run, descriptions


def _parameter_distance(params: PyTree, initial: PyTree) -> float:
  """‖θ − θ₀‖ / ‖θ₀‖ over all leaves: how far a trained teacher moved from its start."""
  moved = sum(float(jnp.sum((jnp.asarray(p) - q) ** 2))
              for p, q in zip(jax.tree.leaves(params), jax.tree.leaves(initial)))
  start = sum(float(jnp.sum(jnp.asarray(q) ** 2)) for q in jax.tree.leaves(initial))
  return math.sqrt(moved / start)


def _stop_step(config: ml_collections.ConfigDict, steps_per_epoch: int) -> tuple[int, int]:
  total = config.num_epochs * steps_per_epoch
  return total, (min(total, config.max_steps) if config.max_steps > 0 else total)


def current_record(config: ml_collections.ConfigDict) -> dict[str, Any]:
  """The record (`run_record.make_record`) of a run of `config` from the exports it names now."""
  method = methods.create_method(config)
  teachers = (config_schema.split_names(config.teacher_checkpoint)
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


@dataclasses.dataclass
class _Lane:
  """Where one replica's results go: the single run with its seed (the run itself when not
  replicated): its config, workdir, record, checkpoints, metric writer and progress."""
  config: ml_collections.ConfigDict
  workdir: str
  record: dict[str, Any]
  store: checkpoint.CheckpointStore | None = None
  writer: Any = None
  progress: dict[str, Any] = dataclasses.field(default_factory=lambda: {
      "best_step": None, "best_selection_accuracy": None, "test_accuracy_at_best": None,
      "last_test_accuracy": None, "teacher_test_accuracy": [], "history": [],
      "train_seconds": 0.0, "train_images": 0})


def _checked_lanes(config: ml_collections.ConfigDict, workdir: str) -> list[_Lane]:
  """The lanes of a run, each checked against the run its directory holds (`_checked_record`)
  before anything is built."""
  if not replicas.is_replicated(config):
    return [_Lane(config, workdir, _checked_record(config, workdir))]
  lanes = []
  for seed in replicas.replica_seeds(config):
    single, lane_dir = replicas.replica_config(config, seed), replicas.replica_workdir(workdir, seed)
    os.makedirs(lane_dir, exist_ok=True)
    lanes.append(_Lane(single, lane_dir, _checked_record(single, lane_dir)))
  return lanes


def _raise_if_non_finite(tracker: StepTracker, lanes: list[_Lane]) -> None:
  """Stops the run at its first non-finite step (before anything is saved after it),
  marking every lane's record so that a rerun with a fixed config resumes."""
  bad = tracker.first_non_finite()
  if bad is None:
    return
  step, names, bad_replicas = bad
  for lane in lanes:
    run_record.write_record(lane.workdir, dict(lane.record, diverged_at_step=step))
  last = lanes[0].store.latest_step()
  resume = f"resumes from step {last}" if last is not None else "starts again from step 0"
  where = (f" in the replicas with seed {', '.join(str(lanes[k].config.seed) for k in bad_replicas)}"
           if len(lanes) > 1 else "")
  raise FloatingPointError(
      f"step {step} made {', '.join(names)} non-finite{where} (nothing after step {step - 1} "
      f"is saved): lower config.optimizer.learning_rate or check the data, then rerun with the "
      f"same --workdir={os.path.dirname(lanes[0].workdir) if len(lanes) > 1 else lanes[0].workdir}"
      f": it {resume}")


def _resume(run: _Run, lanes: list[_Lane], model: str) -> tuple[DistillState, bool]:
  """The latest good checkpoint's state, and whether there was one; each lane's progress is
  restored with it. The lanes of a replicated run resume together from the latest step
  that every lane holds (a run stopped between two lanes' saves repeats a few steps)."""
  restored = [lane.store.restore_latest(run.replica_state(run.state, k), model)
              for k, lane in enumerate(lanes)]
  steps = [None if r is None else int(r[0].step) for r in restored]
  if None in steps:
    if any(step is not None for step in steps):
      logging.warning("Some replicas hold no checkpoint: every replica starts from step 0.")
    return run.state, False
  common = min(steps)
  if any(step != common for step in steps):
    restored = [r if int(r[0].step) == common else
                lane.store.restore_latest(run.replica_state(run.state, k), model, max_step=common)
                for k, (lane, r) in enumerate(zip(lanes, restored))]
  for lane, (_, progress) in zip(lanes, restored):
    lane.progress = progress
  logging.info("Resumed from step %d of %s.", common,
               ", ".join(lane.workdir for lane in lanes))
  return run.stacked_state([r[0] for r in restored]), True


def train_one_run(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """One training run in `workdir`, resumed from its latest good checkpoint if there is one;
  a replicated run trains its replicas in `workdir/seed_<s>` (`jaxkd.replicas`)."""
  wall_start = time.time()
  config_validation.validate(config)
  lanes = _checked_lanes(config, workdir)
  seeds = tuple(lane.config.seed for lane in lanes) if replicas.is_replicated(config) else None
  if len(lanes) > 1 and jax.default_backend() == "cpu":
    logging.warning("%d replicas on the CPU: XLA:CPU computes the grouped convolutions of "
                    "replicated models several times slower than one run's (RESULTS.md, "
                    "replicas); running the seeds one after another is faster here.", len(lanes))
  mesh = step_lib.create_mesh(num_replicas=len(lanes))
  inputs = data.create_input(lanes[0].config, mesh)
  lane_inputs = [inputs] + [inputs.with_seed(lane.config.seed) for lane in lanes[1:]]
  info, steps_per_epoch = inputs.info, inputs.steps_per_epoch
  total_steps, stop_step = _stop_step(config, steps_per_epoch)
  run, teacher_descriptions = build_run(config, info, steps_per_epoch, mesh, seeds)
  for lane in lanes:
    lane.writer = reporting.create_writer(lane.workdir)
    lane.store = checkpoint.CheckpointStore(lane.workdir, config.keep_checkpoints)
  selection_split = (data.VALIDATION_SPLIT if data.VALIDATION_SPLIT in inputs.eval_splits
                     else data.TEST_SPLIT)
  initial_teachers = (jax.device_get(run.replica_state(run.state, 0).params["teachers"])
                      if run.method.teacher_mode is base.TeacherMode.TRAINABLE else None)
  with StopSignals() as stops:  # Over the results too: a late signal stops after them.
    try:
      state, resumed = _resume(run, lanes, f"the config's '{config.student_model}'")
      for lane in lanes:
        run_record.write_record(lane.workdir, lane.record)
      if not resumed:
        for i, eval_step in enumerate(run.teacher_eval_steps):
          result = step_lib.evaluate(eval_step, state.params, state.batch_stats,
                                     inputs.eval_batches())
          logging.info("Teacher %d (%s) test accuracy before step 0: %.4f", i,
                       teacher_descriptions[i].get("model"), result["accuracy"])
          for lane in lanes:
            lane.progress["teacher_test_accuracy"].append(result["accuracy"])
            lane.writer.write_scalars(0, {f"teacher/{i}/test_accuracy": result["accuracy"]})
      state = _train_steps(config, run, state, lanes, lane_inputs, stops, initial_teachers,
                           selection_split, stop_step)
    finally:
      for lane in lanes:
        if lane.writer is not None:
          lane.writer.flush()
        if lane.store is not None:
          lane.store.close()
    summaries = [_finish_lane(run, run.replica_state(state, k), lane, info, total_steps,
                              steps_per_epoch, selection_split, wall_start)
                 for k, lane in enumerate(lanes)]
  if stops.received:
    raise TrainingInterrupted(f"{stops.received} arrived as the run finished: its results are "
                              f"written in {workdir}")
  if seeds is None:
    return summaries[0]
  return _replicated_summary(config, workdir, lanes, summaries, wall_start)


def _finish_lane(run: _Run, state: DistillState, lane: _Lane, info, total_steps: int,
                 steps_per_epoch: int, selection_split: str, wall_start: float) -> dict[str, Any]:
  """Exports a lane's model and writes its summary.json; returns the summary."""
  config, progress = lane.config, lane.progress
  checkpoint.export_model(
      lane.workdir, run.method.export_variables(state),
      {"model": config.student_model, "num_classes": info.num_classes, "dataset": config.dataset,
       "method": config.method, "test_accuracy": progress["last_test_accuracy"],
       "step": int(state.step), "run": run_record.record_hash(lane.record),
       **run.student_normalization})
  summary = {
      "method": config.method, "dataset": config.dataset, "student_model": config.student_model,
      "teacher_model": config.teacher_model, "seed": config.seed,
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
      "replicas_trained_together": run.num_replicas,
      "wall_time_s": time.time() - wall_start, "hardware": reporting.hardware_description(),
      "config": config.to_dict(), "config_amendments": lane.record["amendments"],
  }
  reporting.write_summary(lane.workdir, summary)
  curves.write_curves(lane.workdir)
  logging.info("Run finished%s: final test accuracy %s; test accuracy %s at the best %s step "
               "%s.", f" (seed {config.seed})" if run.num_replicas > 1 else "",
               summary["final_test_accuracy"], summary["test_accuracy_at_best"],
               selection_split, summary["best_step"])
  return summary


def _replicated_summary(config: ml_collections.ConfigDict, workdir: str, lanes: list[_Lane],
                        summaries: list[dict[str, Any]], wall_start: float) -> dict[str, Any]:
  """`workdir/summary.json` of a replicated run: where each replica's results are, and the
  mean and sample standard deviation of their final test accuracy."""
  finals = [s["final_test_accuracy"] for s in summaries if s["final_test_accuracy"] is not None]
  summary = {
      "method": config.method, "dataset": config.dataset, "student_model": config.student_model,
      "teacher_model": config.teacher_model,
      "replicas": {os.path.relpath(lane.workdir, workdir): s for lane, s in zip(lanes, summaries)},
      "final_test_accuracy_mean": float(np.mean(finals)) if finals else None,
      "final_test_accuracy_std": float(np.std(finals, ddof=1)) if len(finals) > 1 else None,
      "steps": min(s["steps"] for s in summaries), "total_steps": summaries[0]["total_steps"],
      "wall_time_s": time.time() - wall_start, "hardware": reporting.hardware_description(),
  }
  reporting.write_summary(workdir, summary)
  return summary


def _train_batches(lane_inputs: list, start_step: int, mesh) -> Iterator[dict[str, jax.Array]]:
  """The run's batches from `start_step`: each replica's own, stacked on a leading axis."""
  if len(lane_inputs) == 1:
    yield from lane_inputs[0].train_batches(start_step)
    return
  stack = jax.jit(lambda *batches: jax.tree.map(lambda *x: jnp.stack(x), *batches),
                  out_shardings=step_lib.replica_batch_sharding(mesh))
  streams = [inputs.train_batches(start_step) for inputs in lane_inputs]
  for _ in itertools.count():
    yield stack(*(next(stream) for stream in streams))


def _train_steps(config, run: _Run, state: DistillState, lanes: list[_Lane], lane_inputs: list,
                 stops: StopSignals, initial_teachers, selection_split: str,
                 stop_step: int) -> DistillState:
  """Trains from `state` to `stop_step`: logs, evaluates and saves at the boundaries the
  config sets, each after checking that no step so far was non-finite; after SIGTERM or
  SIGINT, saves at the next step and raises TrainingInterrupted."""
  inputs = lane_inputs[0]
  steps_per_epoch = inputs.steps_per_epoch
  start_step = int(state.step.reshape(-1)[0])
  eval_every = config.eval_every_steps or config.eval_every_epochs * steps_per_epoch
  checkpoint_every = config.checkpoint_every_steps
  batches = _train_batches(lane_inputs, start_step, run.mesh)
  tracker = StepTracker(start_step)
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
    _raise_if_non_finite(tracker, lanes)
    if log:
      _log_window(tracker, lanes, config.batch_size, done, stop_step, steps_per_epoch,
                  window_start)
      window_start = time.time()
    if evaluate:
      _evaluate_and_save(run, state, inputs, initial_teachers, lanes, selection_split, done)
      window_start = time.time()  # Evaluation is not training time.
    elif save or interrupted:
      for k, lane in enumerate(lanes):
        lane.store.save(done, run.replica_state(state, k), lane.progress, is_best=False)
    if interrupted:
      where = ", ".join(os.path.join(lane.workdir, "checkpoints") for lane in lanes)
      raise TrainingInterrupted(
          f"{stops.received} stopped training after step {done}: checkpoint {done} is saved in "
          f"{where}; rerun the same command to resume from it")
  return state


def _log_window(tracker: StepTracker, lanes: list[_Lane], batch_size: int, done: int,
                stop_step: int, steps_per_epoch: int, window_start: float) -> None:
  """Writes each lane's mean train metrics since the last log, the throughput and the ETA."""
  steps = tracker.window_steps
  means = tracker.take_means(len(lanes))
  elapsed = time.time() - window_start
  images_per_s = steps * batch_size / elapsed  # Per replica.
  eta_s = (stop_step - done) * elapsed / steps
  for lane, lane_means in zip(lanes, means):
    lane.progress["train_seconds"] += elapsed
    lane.progress["train_images"] += steps * batch_size
    lane.writer.write_scalars(done, {**{f"train/{k}": v for k, v in lane_means.items()},
                                     "perf/images_per_s": images_per_s,
                                     "perf/eta_min": eta_s / 60})
  losses = [m["loss"] for m in means]
  accuracies = [m["train/accuracy"] for m in means if "train/accuracy" in m]
  spread = f" (replicas {min(losses):.4f}–{max(losses):.4f})" if len(lanes) > 1 else ""
  throughput = (f"{images_per_s * len(lanes):.0f} images/s ({len(lanes)} × {images_per_s:.0f})"
                if len(lanes) > 1 else f"{images_per_s:.0f} images/s")
  logging.info("step %d/%d (epoch %.2f): loss %.4f%s%s, %s, ETA %s", done, stop_step,
               done / steps_per_epoch, float(np.mean(losses)), spread,
               f", train accuracy {np.mean(accuracies):.4f}" if accuracies else "", throughput,
               time.strftime("%H:%M:%S", time.gmtime(eta_s)))


def _evaluation_points(run: _Run, state: DistillState, inputs, initial_teachers: PyTree | None,
                       step: int, steps_per_epoch: int,
                       replica_states: list[DistillState]) -> list[dict[str, float]]:
  """Each replica's accuracy and loss on every evaluation split at `step`; for a teacher
  that trains, its test accuracy and its relative distance from its starting weights
  (`replica_states`: each replica's part of `state`)."""
  points = [{"step": step, "epoch": step / steps_per_epoch} for _ in range(run.num_replicas)]
  for split in inputs.eval_splits:
    results = step_lib.evaluate_replicas(run.student_eval_step, state.params, state.batch_stats,
                                         inputs.eval_batches(split))
    for point, result in zip(points, results):
      point[f"{split}/accuracy"], point[f"{split}/loss"] = result["accuracy"], result["loss"]
  if initial_teachers is not None:
    for i, eval_step in enumerate(run.teacher_eval_steps):
      results = step_lib.evaluate_replicas(eval_step, state.params, state.batch_stats,
                                           inputs.eval_batches())
      for k, (point, result) in enumerate(zip(points, results)):
        point[f"teacher/{i}/test_accuracy"] = result["accuracy"]
        point[f"teacher/{i}/relative_distance"] = _parameter_distance(
            replica_states[k].params["teachers"][i], initial_teachers[i])
  return points


def _evaluate_and_save(run: _Run, state: DistillState, inputs, initial_teachers,
                       lanes: list[_Lane], selection_split: str, done: int) -> None:
  """Evaluates at step `done`, notes each lane's best step so far, and saves each lane (as
  its best too if so)."""
  replica_states = [run.replica_state(state, k) for k in range(len(lanes))]
  points = _evaluation_points(run, state, inputs, initial_teachers, done, inputs.steps_per_epoch,
                              replica_states)
  for lane, point, replica_state in zip(lanes, points, replica_states):
    progress = lane.progress
    lane.writer.write_scalars(done, {n: v for n, v in point.items() if n not in ("step", "epoch")})
    progress["history"].append(point)
    progress["last_test_accuracy"] = point["test/accuracy"]
    logging.info("step %d (epoch %.2f)%s: %s", done, point["epoch"],
                 f" seed {lane.config.seed}" if len(lanes) > 1 else "", ", ".join(
                     f"{name} {value:.4f}" for name, value in point.items()
                     if name.endswith("accuracy")))
    selection = point[f"{selection_split}/accuracy"]
    is_best = (progress["best_selection_accuracy"] is None
               or selection > progress["best_selection_accuracy"])
    if is_best:
      progress.update(best_selection_accuracy=selection, best_step=done,
                      test_accuracy_at_best=point["test/accuracy"])
    lane.store.save(done, replica_state, progress, is_best=is_best)
