"""`train_and_evaluate(config, workdir)`: one run, or a pipeline of runs, from a config.

The trainer is the loop: build the run (`jaxkd.run_builder`, which knows no method by
name), resume its lanes (`jaxkd.run_lanes`: each replica's records, checkpoints and results,
the run itself when not replicated), then train, log, evaluate and save at the boundaries
the config sets. Notebooks call `train_and_evaluate` directly; `python -m jaxkd.main` wraps it.
"""

import itertools
import math
import os
import time
from typing import Any, Callable, Iterator

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging

from jaxkd import (compile_cache, config_schema, config_validation, data, pipeline, replicas,
                   run_builder, run_lanes, run_record)
from jaxkd import step as step_lib
from jaxkd.models import layers
from jaxkd.methods import base
from jaxkd.state import DistillState
from jaxkd.step_tracker import StepTracker
from jaxkd.stop_signals import StopSignals

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


def _parameter_distance(params: PyTree, initial: PyTree) -> float:
  """‖θ − θ₀‖ / ‖θ₀‖ over all leaves: how far a trained teacher moved from its start."""
  moved = sum(float(jnp.sum((jnp.asarray(p) - q) ** 2))
              for p, q in zip(jax.tree.leaves(params), jax.tree.leaves(initial)))
  start = sum(float(jnp.sum(jnp.asarray(q) ** 2)) for q in jax.tree.leaves(initial))
  return math.sqrt(moved / start)


def _stop_step(config: ml_collections.ConfigDict, steps_per_epoch: int) -> tuple[int, int]:
  total = config.num_epochs * steps_per_epoch
  return total, (min(total, config.max_steps) if config.max_steps > 0 else total)


def train_one_run(config: ml_collections.ConfigDict, workdir: str,
                  replica_dir: Callable[[str], str] | None = None,
                  command: run_lanes.CommandLine = run_lanes.CommandLine()) -> dict[str, Any]:
  """One training run in `workdir`, resumed from its latest good checkpoint if there is one;
  a replicated run trains its replicas in their directories under `workdir`
  (`jaxkd.replicas`: `seed_<s>`, `temperature_4`, ...), or where `replica_dir` puts them
  (`run_lanes.checked_lanes`), and writes the summary of them all to `workdir`. `command`
  names the run's flags in the errors it stops with (a pipeline's stage: its own)."""
  wall_start = time.time()
  config_validation.validate(config)
  lanes = run_lanes.checked_lanes(config, workdir, replica_dir, command)
  replicated = replicas.is_replicated(config)
  seeds = tuple(lane.config.seed for lane in lanes) if replicated else None
  settings = replicas.sweep_values([lane.replica for lane in lanes]) if replicated else None
  if (len(lanes) > 1 and jax.default_backend() == "cpu"
      and layers.conv_impl_name(config.conv_impl) == "xla"):
    logging.warning("%d replicas with conv_impl='xla' on the CPU: XLA:CPU computes the "
                    "convolutions of replicated models (grouped over the replicas) about 5× "
                    "slower than one run's; conv_impl='auto' computes them one by one.",
                    len(lanes))
  mesh = step_lib.create_mesh(num_replicas=len(lanes))
  inputs = data.create_input(lanes[0].config, mesh)
  info, steps_per_epoch = inputs.info, inputs.steps_per_epoch
  total_steps, stop_step = _stop_step(config, steps_per_epoch)
  run, teacher_descriptions = run_builder.build_run(config, info, steps_per_epoch, mesh, seeds,
                                                    settings)
  lane_inputs = [inputs] + ([] if run.shared_batch else
                            [inputs.with_seed(lane.config.seed) for lane in lanes[1:]])
  run_lanes.open_lanes(lanes, config.keep_checkpoints)
  selection_split = (data.VALIDATION_SPLIT if data.VALIDATION_SPLIT in inputs.eval_splits
                     else data.TEST_SPLIT)
  initial_teachers = ([jax.device_get(run.replica_state(run.state, k).params["teachers"])
                       for k in range(len(lanes))]
                      if run.method.teacher_mode is base.TeacherMode.TRAINABLE else None)
  with StopSignals() as stops:  # Over the results too: a late signal stops after them.
    try:
      state, resumed = run_lanes.resume(run, lanes, f"the config's '{config.student_model}'")
      for lane in lanes:
        run_record.write_record(lane.workdir, lane.record)
      if not resumed:
        for i, eval_step in enumerate(run.teacher_eval_steps):
          results = step_lib.evaluate_replicas(eval_step, state.params, state.batch_stats,
                                               inputs.eval_batches())
          for lane, result in zip(lanes, results):
            logging.info("Teacher %d (%s, %s) test accuracy before step 0: %.4f", i,
                         teacher_descriptions[i].get("model"), lane.config.teacher_checkpoint,
                         result["accuracy"])
            lane.progress["teacher_test_accuracy"].append(result["accuracy"])
            lane.writer.write_scalars(0, {f"teacher/{i}/test_accuracy": result["accuracy"]})
      state = _train_steps(config, run, state, lanes, lane_inputs, stops, initial_teachers,
                           selection_split, stop_step)
      stops.arm()  # Also when no step was left to train.
    finally:
      run_lanes.close_lanes(lanes)
    summaries = [run_lanes.finish_lane(run, run.replica_state(state, k), lane, info,
                                       total_steps, steps_per_epoch, selection_split, wall_start)
                 for k, lane in enumerate(lanes)]
  if stops.received:
    raise TrainingInterrupted(f"{stops.received} arrived as the run finished: its results are "
                              f"written in {workdir}")
  if seeds is None:
    return summaries[0]
  return run_lanes.replicated_summary(config, workdir, lanes, summaries, wall_start)


def _train_batches(lane_inputs: list, start_step: int, mesh) -> Iterator[dict[str, jax.Array]]:
  """The run's batches from `start_step`: each replica's own, stacked on a leading axis (one
  input: the batches every replica shares)."""
  if len(lane_inputs) == 1:
    yield from lane_inputs[0].train_batches(start_step)
    return
  stack = jax.jit(lambda *batches: jax.tree.map(lambda *x: jnp.stack(x), *batches),
                  out_shardings=step_lib.replica_batch_sharding(mesh))
  streams = [inputs.train_batches(start_step) for inputs in lane_inputs]
  for _ in itertools.count():
    yield stack(*(next(stream) for stream in streams))


def _train_steps(config, run: run_builder.Run, state: DistillState,
                 lanes: list[run_lanes.Lane], lane_inputs: list, stops: StopSignals,
                 initial_teachers, selection_split: str, stop_step: int) -> DistillState:
  """Trains from `state` to `stop_step`: logs, evaluates and saves at the boundaries the
  config sets, each after checking that no step so far was non-finite; after SIGTERM or
  SIGINT, saves at the next step (abandoning an evaluation: the rerun does it again) and
  raises TrainingInterrupted."""
  inputs = lane_inputs[0]
  steps_per_epoch = inputs.steps_per_epoch
  start_step = int(state.step.reshape(-1)[0])
  eval_every = config.eval_every_steps or config.eval_every_epochs * steps_per_epoch
  checkpoint_every = config.checkpoint_every_steps
  if _evaluation_left_undone(lanes, start_step, eval_every, stop_step):
    _evaluate_and_save(run, state, inputs, initial_teachers, lanes, selection_split, start_step,
                       stops)
  batches = _train_batches(lane_inputs, start_step, run.mesh)
  tracker = StepTracker(start_step)
  window_start = time.time()
  compiles = compile_cache.CompileWatch()
  for step in range(start_step, stop_step):
    state, metrics = run.train_step(state, next(batches))
    done = step + 1
    tracker.add(metrics, into_window=step != start_step)
    if step == start_step:  # The first step compiles: keep it out of the throughput.
      jax.block_until_ready(state)
      logging.info("First train step: %s.", compiles.describe())
      window_start = time.time()
      stops.arm()  # From now on a signal saves before it stops.
    log = tracker.window_steps and (done % config.log_every_steps == 0 or done == stop_step)
    evaluate = done % eval_every == 0 or done == stop_step
    save = evaluate or bool(checkpoint_every and done % checkpoint_every == 0)
    interrupted = stops.stop_after(done, bool(log or save))
    if not (log or save or interrupted):
      continue
    run_lanes.raise_if_non_finite(tracker, lanes)
    if log:
      _log_window(tracker, lanes, config.batch_size, done, stop_step, steps_per_epoch,
                  window_start)
      window_start = time.time()
    evaluated = False
    if evaluate and not interrupted:
      evaluated = _evaluate_and_save(run, state, inputs, initial_teachers, lanes,
                                     selection_split, done, stops)
      interrupted = not evaluated
      window_start = time.time()  # Evaluation is not training time.
    if (save or interrupted) and not evaluated:
      for k, lane in enumerate(lanes):
        lane.store.save(done, run.replica_state(state, k), lane.progress, is_best=False)
    if interrupted:
      where = ", ".join(os.path.join(lane.workdir, "checkpoints") for lane in lanes)
      raise TrainingInterrupted(
          f"{stops.received} stopped training after step {done}: checkpoint {done} is saved in "
          f"{where}; rerun the same command to resume from it")
  return state


def _log_window(tracker: StepTracker, lanes: list[run_lanes.Lane], batch_size: int,
                done: int, stop_step: int, steps_per_epoch: int, window_start: float) -> None:
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


def _evaluation_left_undone(lanes: list[run_lanes.Lane], step: int, eval_every: int,
                            stop_step: int) -> bool:
  """Whether the run resumes from step `step` of an evaluation that a signal abandoned (its
  checkpoint was saved without the evaluation)."""
  at_evaluation = step > 0 and (step % eval_every == 0 or step == stop_step)
  return at_evaluation and all(p["step"] != step for p in lanes[0].progress["history"])


def _evaluation_points(run: run_builder.Run, state: DistillState, inputs,
                       initial_teachers: list[PyTree] | None, step: int, steps_per_epoch: int,
                       replica_states: list[DistillState],
                       stops: StopSignals) -> list[dict[str, float]]:
  """Each replica's accuracy and loss on every evaluation split at `step`; for a teacher
  that trains, its test accuracy and its relative distance from its starting weights
  (`initial_teachers`: each replica's; `replica_states`: each replica's part of `state`).
  Raises step_lib.EvaluationStopped as soon as `stops` says to stop."""
  points = [{"step": step, "epoch": step / steps_per_epoch} for _ in range(run.num_replicas)]
  for split in inputs.eval_splits:
    results = step_lib.evaluate_replicas(run.student_eval_step, state.params, state.batch_stats,
                                         inputs.eval_batches(split), stops.stopping)
    for point, result in zip(points, results):
      point[f"{split}/accuracy"], point[f"{split}/loss"] = result["accuracy"], result["loss"]
  if initial_teachers is not None:
    for i, eval_step in enumerate(run.teacher_eval_steps):
      results = step_lib.evaluate_replicas(eval_step, state.params, state.batch_stats,
                                           inputs.eval_batches(), stops.stopping)
      for k, (point, result) in enumerate(zip(points, results)):
        point[f"teacher/{i}/test_accuracy"] = result["accuracy"]
        point[f"teacher/{i}/relative_distance"] = _parameter_distance(
            replica_states[k].params["teachers"][i], initial_teachers[k][i])
  return points


def _evaluate_and_save(run: run_builder.Run, state: DistillState, inputs, initial_teachers,
                       lanes: list[run_lanes.Lane], selection_split: str, done: int,
                       stops: StopSignals) -> bool:
  """Evaluates at step `done`, notes each lane's best step so far, and saves each lane (as
  its best too if so); False, with nothing noted or saved, when a signal abandons it."""
  replica_states = [run.replica_state(state, k) for k in range(len(lanes))]
  try:
    points = _evaluation_points(run, state, inputs, initial_teachers, done,
                                inputs.steps_per_epoch, replica_states, stops)
  except step_lib.EvaluationStopped:
    return False
  for lane, point, replica_state in zip(lanes, points, replica_states):
    progress = lane.progress
    lane.writer.write_scalars(done, {n: v for n, v in point.items() if n not in ("step", "epoch")})
    progress["history"].append(point)
    progress["last_test_accuracy"] = point["test/accuracy"]
    logging.info("step %d (epoch %.2f)%s: %s", done, point["epoch"],
                 f" {lane.replica.directory}" if lane.replica.directory else "", ", ".join(
                     f"{name} {value:.4f}" for name, value in point.items()
                     if name.endswith("accuracy")))
    selection = point[f"{selection_split}/accuracy"]
    is_best = (progress["best_selection_accuracy"] is None
               or selection > progress["best_selection_accuracy"])
    if is_best:
      progress.update(best_selection_accuracy=selection, best_step=done,
                      test_accuracy_at_best=point["test/accuracy"])
    lane.store.save(done, replica_state, progress, is_best=is_best)
  return True
