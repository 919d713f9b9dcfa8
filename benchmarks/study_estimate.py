"""Estimated wall time of a study's runs, from a few timed steps of each distinct method.

Each distinct (method, student, teacher) of the runs is built once as the trainer builds it
(`jaxkd.run_builder.build_run`, the real input pipeline and compiled steps) and timed:
- set-up: input, models, teachers and the first (compiling) train step, plus compiling
  the evaluation steps;
- one train step: the mean over `probe_steps` steps after the compiling one;
- one evaluation point: one timed batch of each evaluation split (and of the teacher on
  'test' when it trains) times the split's batch count.
A run is then set-up + stop_step × step + evaluation points × evaluation, summed over the
stages of a pipeline. Checkpoint writing is not counted.
"""

import dataclasses
import math
import time
from typing import Callable, Mapping, Sequence

import jax
import ml_collections

from jaxkd import config_validation, data, reporting, run_builder
from jaxkd import step as step_lib
from jaxkd.methods import base

from benchmarks import study_configs, study_runs

PROBE_STEPS = 5
EVAL_REPEATS = 2


@dataclasses.dataclass(frozen=True)
class StageCost:
  """Measured costs of one kind of run."""
  setup_s: float
  step_s: float
  eval_s: float  # One evaluation point: every split once.
  steps_per_epoch: int


def _probe_key(config: ml_collections.ConfigDict) -> tuple[str, str, str]:
  return config.method, config.student_model, config.teacher_model


def _timed_eval(eval_step, params, batch_stats, batch) -> float:
  """Seconds per batch of `eval_step` (compiled already)."""
  started = time.perf_counter()
  step_lib.evaluate(eval_step, params, batch_stats, [batch] * EVAL_REPEATS)
  return (time.perf_counter() - started) / EVAL_REPEATS


def probe(config: ml_collections.ConfigDict, probe_steps: int = PROBE_STEPS) -> StageCost:
  """Builds the run of `config` as the trainer does and times its steps (see module doc)."""
  config_validation.validate(config)
  started = time.perf_counter()
  mesh = step_lib.create_mesh()
  inputs = data.create_input(config, mesh)
  run, _ = run_builder.build_run(config, inputs.info, inputs.steps_per_epoch, mesh)
  batches = inputs.train_batches(0)
  state, _ = run.train_step(run.state, next(batches))
  jax.block_until_ready(state)
  eval_parts = []  # (eval step, number of batches per evaluation point, split)
  for split in inputs.eval_splits:
    count = (inputs.num_eval_batches if split == data.TEST_SPLIT
             else math.ceil(config.validation_examples / config.eval_batch_size))
    eval_parts.append((run.student_eval_step, count, split))
  if run.method.teacher_mode is base.TeacherMode.TRAINABLE:
    eval_parts += [(eval_step, inputs.num_eval_batches, data.TEST_SPLIT)
                   for eval_step in run.teacher_eval_steps]
  for eval_step, _, split in eval_parts:  # Compiles.
    step_lib.evaluate(eval_step, state.params, state.batch_stats,
                      [next(inputs.eval_batches(split))])
  setup_s = time.perf_counter() - started

  started = time.perf_counter()
  for _ in range(probe_steps):
    state, _ = run.train_step(state, next(batches))
  jax.block_until_ready(state)
  step_s = (time.perf_counter() - started) / probe_steps
  eval_s = sum(count * _timed_eval(eval_step, state.params, state.batch_stats,
                                   next(inputs.eval_batches(split)))
               for eval_step, count, split in eval_parts)
  return StageCost(setup_s, step_s, eval_s, inputs.steps_per_epoch)


def stage_seconds(cost: StageCost, config: ml_collections.ConfigDict) -> float:
  """The estimated wall time of a run of `config` with the measured `cost`."""
  total = config.num_epochs * cost.steps_per_epoch
  stop = min(total, config.max_steps) if config.max_steps > 0 else total
  every = config.eval_every_steps or config.eval_every_epochs * cost.steps_per_epoch
  evaluations = stop // every + (1 if stop % every else 0)
  return cost.setup_s + stop * cost.step_s + evaluations * cost.eval_s


def _probe_config(stage: ml_collections.ConfigDict, teacher_dir: str) -> ml_collections.ConfigDict:
  """`stage` runnable on its own: a teacher still to be trained by an earlier stage ('@x') is
  replaced by the suite's teacher, whose architecture it has."""
  config = stage.copy_and_resolve_references()
  if config.teacher_checkpoint.startswith("@"):
    config.teacher_checkpoint = teacher_dir
  return config


def estimate_runs(runs: Sequence[study_runs.StudyRun],
                  config_of: Callable[[study_runs.StudyRun], ml_collections.ConfigDict],
                  teacher_dir: str, probe_steps: int = PROBE_STEPS,
                  log: Callable[[str], None] = print) -> dict[str, float]:
  """Estimated seconds per label of `runs` (a label's seeds cost the same), probing each
  distinct (method, student, teacher) once."""
  costs: dict[tuple[str, str, str], StageCost] = {}
  estimates = {}
  for run in runs:
    if run.label in estimates:
      continue
    seconds = 0.0
    for stage in study_configs.stage_configs(config_of(run)):
      config = _probe_config(stage, teacher_dir)
      key = _probe_key(config)
      if key not in costs:
        method, student, teacher = key
        log(f"Timing {probe_steps} steps of {method} training {student}"
            f"{f' from {teacher}' if teacher else ''} ({run.label}) ...")
        costs[key] = probe(config, probe_steps)
        cost = costs[key]
        log(f"  set-up {cost.setup_s:.1f} s, {cost.step_s:.3f} s/step, "
            f"{cost.eval_s:.1f} s/evaluation")
      seconds += stage_seconds(costs[key], config)
    estimates[run.label] = seconds
  return estimates


def estimate_lines(runs: Sequence[study_runs.StudyRun], estimates: Mapping[str, float],
                   done: Sequence[bool]) -> list[str]:
  """One line per run with its estimate (or 'done'), then the total of the runs to train."""
  lines = [f"{'run':40s} estimated wall time"]
  for run, is_done in zip(runs, done):
    text = "done" if is_done else study_runs.format_duration(estimates[run.label])
    lines.append(f"{run.label + ' seed ' + str(run.seed):40s} {text}")
  todo = [run for run, is_done in zip(runs, done) if not is_done]
  total = sum(estimates[run.label] for run in todo)
  lines.append(f"Total: {study_runs.format_duration(total)} for {len(todo)} run(s) to train "
               f"on {reporting.hardware_description()}.")
  return lines
