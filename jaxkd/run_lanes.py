"""A run's lanes: where each replica's results go, as the single run it stands for.

A single run has one lane, the run itself; a replicated run (`jaxkd.replicas`) has one per
replica, in its directory under the workdir (`seed_<s>`, `temperature_4`, …). A lane holds
its config, record (`fingerprint.json`, checked against what its directory holds before
anything is built), checkpoints, metric writer and progress; here are its resume, its stop
at a non-finite step, and its export and summary.
"""

import dataclasses
import os
import time
from typing import Any, Callable

import ml_collections
import numpy as np
from absl import logging

from jaxkd import (checkpoint, config_schema, curves, methods, replicas, reporting,
                   run_builder, run_record)
from jaxkd.methods import base
from jaxkd.state import DistillState
from jaxkd.step_tracker import StepTracker


@dataclasses.dataclass(frozen=True)
class CommandLine:
  """How `python -m jaxkd.main` names a run's settings, for the flags its errors print: the
  `section` of its fields ('config', or 'config.stages.<stage>' for a pipeline's stage) and
  the `restart` value of `--config.restart_stages` that retrains it ('run', or the stage)."""
  section: str = "config"
  restart: str = "run"


def current_record(config: ml_collections.ConfigDict) -> dict[str, Any]:
  """The record (`run_record.make_record`) of a run of `config` from the exports it names now."""
  method = methods.create_method(config)
  teachers = (config_schema.split_names(config.teacher_checkpoint)
              if method.teacher_mode is not base.TeacherMode.NONE else ())
  inputs = run_record.input_fingerprints(teachers, method.student_checkpoint())
  return run_record.make_record(config, inputs)


def checked_record(config: ml_collections.ConfigDict, workdir: str,
                   command: CommandLine = CommandLine()) -> dict[str, Any]:
  """The run's record, to write to `workdir` once it resumes; raises run_record.StaleRunError
  when `workdir` holds results of another config or teacher.

  After a divergence (`diverged_at_step`) the changes are the fix, and are kept in the
  record's `amendments`. With `restart_stages='run'` the old results are moved aside to
  `<workdir>.replaced-<time>` and the run starts again.
  """
  current = current_record(config)
  recorded = run_record.read_record(workdir)
  changes = run_record.record_changes(recorded, current) if recorded else []
  if recorded is None and config.restart_stages == "run" and checkpoint.has_results(workdir):
    # Results without a record (an older jaxkd, copied checkpoints): retrained on request.
    moved = checkpoint.move_aside(workdir, "replaced")
    logging.warning("The old run (no record of its config) is moved to %s; training again.",
                    moved)
    os.makedirs(workdir, exist_ok=True)
  elif changes and checkpoint.has_results(workdir):
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
          f"--workdir, or --config.restart_stages={command.restart} to retrain it here (the "
          "old run is moved aside)")
  elif recorded and not changes:
    current = dict(recorded, diverged_at_step=None)  # Set again if it diverges again.
  return current


@dataclasses.dataclass
class Lane:
  """Where one replica's results go: the single run it stands for (the run itself when not
  replicated): its replica, config, workdir, record, checkpoints, metric writer and progress."""
  replica: replicas.Replica
  config: ml_collections.ConfigDict
  workdir: str
  run_workdir: str  # The workdir of the run the lane belongs to.
  record: dict[str, Any]
  command: CommandLine = CommandLine()
  store: checkpoint.CheckpointStore | None = None
  writer: Any = None
  progress: dict[str, Any] = dataclasses.field(default_factory=lambda: {
      "best_step": None, "best_selection_accuracy": None, "test_accuracy_at_best": None,
      "last_test_accuracy": None, "teacher_test_accuracy": [], "history": [],
      "train_seconds": 0.0, "train_images": 0})

def checked_lanes(config: ml_collections.ConfigDict, workdir: str,
                  replica_dir: Callable[[str], str] | None = None,
                  command: CommandLine = CommandLine()) -> list[Lane]:
  """The lanes of a run, each checked against the run its directory holds (`checked_record`)
  before anything is built. A replica's lane is `replica_dir(replica.directory)`, by default
  that directory under `workdir` (a pipeline's stage puts seed s in `WORKDIR/seed_<s>/<stage>`);
  `command` names the run's flags."""
  replica_dir = replica_dir or (lambda directory: os.path.join(workdir, directory))
  lanes = []
  for replica, single in replicas.single_runs(config):
    lane_dir = replica_dir(replica.directory) if replica.directory else workdir
    os.makedirs(lane_dir, exist_ok=True)
    lanes.append(Lane(replica, single, lane_dir, workdir,
                      checked_record(single, lane_dir, command), command))
  return lanes


def open_lanes(lanes: list[Lane], keep_checkpoints: int) -> None:
  """Opens each lane's metric writer and checkpoint store."""
  for lane in lanes:
    lane.writer = reporting.create_writer(lane.workdir)
    lane.store = checkpoint.CheckpointStore(lane.workdir, keep_checkpoints,
                                            name=lane.replica.directory)


def close_lanes(lanes: list[Lane]) -> None:
  """Flushes each lane's metrics and waits for its checkpoints to be written."""
  for lane in lanes:
    if lane.writer is not None:
      lane.writer.flush()
    if lane.store is not None:
      lane.store.close()


def raise_if_non_finite(tracker: StepTracker, lanes: list[Lane]) -> None:
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
  bad_lanes = ", ".join(lanes[k].replica.directory for k in bad_replicas)
  where = f" in the replicas {bad_lanes}" if len(lanes) > 1 else ""
  lower_rate = (f"--{lanes[0].command.section}.optimizer.learning_rate="
                f"{lanes[0].config.optimizer.learning_rate / 2:g}")
  raise FloatingPointError(
      f"step {step} made {', '.join(names)} non-finite{where} (nothing after step {step - 1} "
      f"is saved): rerun the same command with {lower_rate} (half the learning rate), or "
      f"unchanged once the data is checked: it {resume}")


def resume(run: run_builder.Run, lanes: list[Lane], model: str
           ) -> tuple[DistillState, bool]:
  """The latest good checkpoint's state, and whether there was one; each lane's progress is
  restored with it. The lanes of a replicated run resume together from the latest step
  that every lane holds (a run stopped between two lanes' saves repeats a few steps)."""
  restored = [lane.store.restore_latest(run.replica_state(run.state, k), model,
                                        restart=lane.command.restart)
              for k, lane in enumerate(lanes)]
  steps = [None if r is None else int(r[0].step) for r in restored]
  if None in steps:
    if any(step is not None for step in steps):
      logging.warning("Some replicas hold no checkpoint: every replica starts from step 0.")
    return run.state, False
  common = min(steps)
  if any(step != common for step in steps):
    restored = [r if int(r[0].step) == common else
                lane.store.restore_latest(run.replica_state(run.state, k), model, max_step=common,
                                          restart=lane.command.restart)
                for k, (lane, r) in enumerate(zip(lanes, restored))]
  for lane, (_, progress) in zip(lanes, restored):
    lane.progress = progress
  logging.info("Resumed from step %d of %s.", common,
               ", ".join(lane.workdir for lane in lanes))
  return run.stacked_state([r[0] for r in restored]), True


def finish_lane(run: run_builder.Run, state: DistillState, lane: Lane, info, total_steps: int,
                steps_per_epoch: int, selection_split: str, wall_start: float
                ) -> dict[str, Any]:
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
               "%s.", f" ({lane.replica.directory})" if lane.replica.directory else "",
               summary["final_test_accuracy"], summary["test_accuracy_at_best"],
               selection_split, summary["best_step"])
  return summary


def replicated_summary(config: ml_collections.ConfigDict, workdir: str, lanes: list[Lane],
                        summaries: list[dict[str, Any]], wall_start: float) -> dict[str, Any]:
  """`workdir/summary.json` of a replicated run: where each replica's results are, and the
  mean and sample standard deviation of their final test accuracy (for a sweep, of each
  setting's replicas: `settings`, keyed by the setting's directory)."""
  groups: dict[str, list[float]] = {}
  for lane, lane_summary in zip(lanes, summaries):
    final = lane_summary["final_test_accuracy"]
    groups.setdefault(replicas.settings_directory(lane.replica.settings), []).extend(
        [] if final is None else [final])
  summary = {
      "method": config.method, "dataset": config.dataset, "student_model": config.student_model,
      "teacher_model": config.teacher_model,
      "replicas": {lane.replica.directory: s for lane, s in zip(lanes, summaries)},
      **(_accuracy_statistics(groups[""]) if list(groups) == [""] else
         {"settings": {name: _accuracy_statistics(finals) for name, finals in groups.items()}}),
      "steps": min(s["steps"] for s in summaries), "total_steps": summaries[0]["total_steps"],
      "wall_time_s": time.time() - wall_start, "hardware": reporting.hardware_description(),
  }
  reporting.write_summary(workdir, summary)
  return summary


def _accuracy_statistics(finals: list[float]) -> dict[str, Any]:
  """Mean and sample standard deviation of final test accuracies, and their number."""
  return {"final_test_accuracy_mean": float(np.mean(finals)) if finals else None,
          "final_test_accuracy_std": float(np.std(finals, ddof=1)) if len(finals) > 1 else None,
          "final_test_accuracy_count": len(finals)}
