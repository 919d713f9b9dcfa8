"""Checkpoints: resume, last N + best, and the exported model a later run loads as its teacher.

Layout of a workdir:
    checkpoints/<step>/     the last `keep` train states (orbax CheckpointManager)
    best/<step>/            the train state with the best eval accuracy so far
    export/variables/       the trained model alone (`params`, `batch_stats`)
    export/model.json       what it is: model name, classes, data set, accuracy

A teacher may also be a PyTorch state_dict file in its model's published layout
(`jaxkd.torch_layout`), imported when loaded.

    fingerprint.json        what the run is: its config fields that change results and the
                            exports it learnt from (`run_record`), checked on every rerun

Orbax writes each checkpoint to a temporary directory and renames it when complete,
so a run killed mid-save leaves the previous checkpoint intact, and that temporary
`<step>.orbax-checkpoint-tmp-<time>` directory, which the next run removes (orbax keeps them
unless asked: `cleanup_tmp_directories` is off by default). A checkpoint that
cannot be restored, or holds a NaN or an inf, is moved aside to
`checkpoints/<step>.<reason>-<time>` (never deleted) and the one before it is used.
"""

import glob
import json
import os
import shutil
import time
from typing import Any

import jax
import jax.numpy as jnp
from absl import logging
from jax.experimental import multihost_utils
import numpy as np
import orbax.checkpoint as ocp

from jaxkd import torch_checkpoint, torch_layout

PyTree = Any
EXPORT_DIR = "export"
UNFINISHED_SAVE_MARKER = ".orbax-checkpoint-tmp"  # In the name of a save's temporary directory.


def _abstract(tree: PyTree) -> PyTree:
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), tree)


def _manager_options(keep: int, name: str) -> ocp.CheckpointManagerOptions:
  """Options of one manager; `name` keeps its multi-process barriers apart from those of the
  other managers that save the same step at the same time (orbax refuses a barrier whose
  key is already in use: the save then hangs)."""
  return ocp.CheckpointManagerOptions(
      max_to_keep=keep, create=True,
      multiprocessing_options=ocp.options.MultiprocessingOptions(barrier_sync_key_prefix=name))


def _item_handlers() -> dict[str, ocp.CheckpointHandler]:
  """The handlers of a checkpoint's items, known up front so that metadata reads before any
  save or restore."""
  return {"state": ocp.StandardCheckpointHandler(), "progress": ocp.JsonCheckpointHandler()}


class CheckpointStore:
  """The last `keep` train states plus the best one, each with a small JSON of progress.

  `name` tells this store's barriers from those of the other stores of the same process
  group (each replica of a replicated run has its own store): it must differ between
  stores that save at the same time, and be the same in every process.
  """

  def __init__(self, workdir: str, keep: int, name: str = ""):
    prefix = f"{name}." if name else ""
    last_dir = os.path.join(os.path.abspath(workdir), "checkpoints")
    best_dir = os.path.join(os.path.abspath(workdir), "best")
    remove_unfinished_saves(last_dir, best_dir)
    self._last = ocp.CheckpointManager(
        last_dir, options=_manager_options(keep, f"{prefix}last"),
        item_handlers=_item_handlers())
    self._best = ocp.CheckpointManager(
        best_dir, options=_manager_options(1, f"{prefix}best"), item_handlers=_item_handlers())

  def latest_step(self) -> int | None:
    return self._last.latest_step()

  def save(self, step: int, state: PyTree, progress: dict, *, is_best: bool) -> None:
    """Saves `state` and `progress` as checkpoint `step` (and as the best one if `is_best`).
    A step saved already (its evaluation, abandoned for a signal, redone on resuming) keeps
    its checkpoint."""
    args = ocp.args.Composite(state=ocp.args.StandardSave(state),
                              progress=ocp.args.JsonSave(progress))
    if step not in self._last.all_steps():
      self._last.save(step, args=args, force=True)
    if is_best:
      self._best.save(step, args=args, force=True)

  def restore_latest(self, state_like: PyTree, model: str = "the config's model",
                     max_step: int | None = None, restart: str = "run"
                     ) -> tuple[PyTree, dict] | None:
    """The latest good train state (of a step ≤ `max_step` when given), restored with the
    shardings of `state_like`, and its progress; None when no such checkpoint is left.

    A checkpoint that fails to restore or holds a non-finite value is moved aside with a
    warning and the previous one is tried. Checkpoints (last and best) of later steps than
    the one restored are moved aside too, since training saves those steps again. A
    checkpoint of another model than `model` (what the config calls the one `state_like`
    holds) raises ValueError, whose hint retrains with `--config.restart_stages=<restart>`.
    """
    while (step := self._latest_step(max_step)) is not None:
      self._check_model(step, state_like, model, restart)
      try:
        restored = self._last.restore(
            step, args=ocp.args.Composite(state=ocp.args.StandardRestore(_abstract(state_like)),
                                          progress=ocp.args.JsonRestore()))
        problem = None if _is_finite(restored["state"]) else "nonfinite"
      except Exception as error:  # pylint: disable=broad-except
        problem, restored = "corrupt", None
        logging.warning("Checkpoint %d does not restore: %s", step, error)
      if not _agreed(problem is not None):
        self._move_aside_after(step)
        return restored["state"], restored["progress"]
      self._move_aside(self._last, step, problem or "corrupt")
    self._move_aside_after(-1)
    return None

  def _latest_step(self, max_step: int | None) -> int | None:
    steps = [s for s in self._last.all_steps() if max_step is None or s <= max_step]
    return max(steps, default=None)

  def _check_model(self, step: int, state_like: PyTree, model: str, restart: str) -> None:
    """Raises ValueError when checkpoint `step` holds parameters of other names or shapes."""
    try:
      stored = self._last.item_metadata(step)["state"].tree["params"]
    except Exception:  # pylint: disable=broad-except
      return  # Unreadable metadata: the restore fails and the checkpoint is moved aside.
    problems = shape_differences(_dotted_shapes(stored), _dotted_shapes(state_like.params))
    if problems:
      raise ValueError(
          f"checkpoint {step} in {self._last.directory} holds another model than {model} "
          f"({'; '.join(problems[:3])}): give this config a new --workdir, or rerun with "
          f"--config.restart_stages={restart} to retrain here (the old run is moved aside)")

  def _move_aside_after(self, step: int) -> None:
    """Moves aside the last and best checkpoints of steps after `step`."""
    for manager in (self._last, self._best):
      for later in sorted(s for s in manager.all_steps() if s > step):
        self._move_aside(manager, later, "superseded")

  _REASONS = {"nonfinite": "not finite", "corrupt": "unreadable",
              "superseded": "after the step training resumes from"}

  def _move_aside(self, manager: ocp.CheckpointManager, step: int, reason: str) -> None:
    """Renames checkpoint `step` to `<step>.<reason>-<time>` and forgets it."""
    target = move_aside(os.path.join(str(manager.directory), str(step)), reason)
    logging.warning("Checkpoint %d is %s: moved aside to %s.", step, self._REASONS[reason],
                    target)
    manager.reload()

  def close(self) -> None:
    self._last.wait_until_finished()
    self._best.wait_until_finished()
    self._last.close()
    self._best.close()


def remove_unfinished_saves(*directories: str) -> None:
  """Removes the temporary directories that saves cut short (a run killed mid-save) left in
  `directories`, on process 0, and says so in one line of the log."""
  leftovers = sorted(path for directory in directories
                     for path in glob.glob(os.path.join(glob.escape(directory),
                                                        f"*{UNFINISHED_SAVE_MARKER}*")))
  if not leftovers or jax.process_index() != 0:
    return
  for path in leftovers:
    shutil.rmtree(path, ignore_errors=True)
  logging.warning("Removed %d unfinished checkpoint save(s) of an earlier run (killed while "
                  "saving): %s", len(leftovers), ", ".join(leftovers))


def _is_finite(tree: PyTree) -> bool:
  """Whether every inexact entry of `tree` is finite."""
  return all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree.leaves(tree)
             if jnp.issubdtype(x.dtype, jnp.inexact))


def _agreed(flag: bool) -> bool:
  """`flag` on this process, or on any process of a multi-process run."""
  if jax.process_count() == 1:
    return flag
  return bool(np.any(multihost_utils.process_allgather(np.int32(flag))))


def _key_name(key) -> str:
  for attribute in ("key", "name", "idx"):
    if hasattr(key, attribute):
      return str(getattr(key, attribute))
  return str(key)


def _dotted_shapes(tree: PyTree) -> dict[str, tuple[int, ...]]:
  """`{'student.Conv_0.kernel': shape}` of a tree of arrays or of orbax array metadata."""
  return {".".join(_key_name(k) for k in path): tuple(leaf.shape)
          for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]}


def shape_differences(found: dict[str, tuple], expected: dict[str, tuple]) -> list[str]:
  """'name missing' / 'name has shape A, expected B' / 'name unexpected', in that order."""
  problems = []
  for name, shape in expected.items():
    if name not in found:
      problems.append(f"{name} missing")
    elif found[name] != shape:
      problems.append(f"{name} has shape {found[name]}, expected {shape}")
  return problems + [f"{name} unexpected" for name in sorted(set(found) - set(expected))]


def export_model(workdir: str, variables: PyTree, description: dict) -> None:
  """Saves a trained model's variables and what it is, for use as a teacher or deployment."""
  write_export(os.path.join(os.path.abspath(workdir), EXPORT_DIR), variables, description)


def write_export(export_dir: str, variables: PyTree, description: dict) -> None:
  """Writes `export_dir`/variables and `export_dir`/model.json: an export that
  `load_exported_model(export_dir, ...)` loads."""
  export_dir = os.path.abspath(os.path.expanduser(export_dir))
  checkpointer = ocp.StandardCheckpointer()
  checkpointer.save(os.path.join(export_dir, "variables"), variables, force=True)
  checkpointer.wait_until_finished()
  if jax.process_index() == 0:
    with open(os.path.join(export_dir, "model.json"), "w") as f:
      json.dump(description, f, indent=2)
  if jax.process_count() > 1:  # No process may look for model.json before it is written.
    multihost_utils.sync_global_devices("jaxkd_export_model")


def find_export_dir(path: str) -> str:
  """`path` itself if it is an export, else `path/export` (the workdir of a finished run)."""
  path = os.path.abspath(os.path.expanduser(path))
  if os.path.exists(os.path.join(path, "model.json")):
    return path
  candidate = os.path.join(path, EXPORT_DIR)
  if os.path.exists(os.path.join(candidate, "model.json")):
    return candidate
  raise FileNotFoundError(
      f"no exported model at '{path}': a teacher checkpoint is the workdir of a finished jaxkd "
      f"run (it holds {EXPORT_DIR}/model.json); train one with --config.method=ce first")


def read_description(path: str) -> dict:
  """model.json of the export at `path` (an export directory or a finished run's workdir)."""
  with open(os.path.join(find_export_dir(path), "model.json")) as f:
    return json.load(f)


# What a checkpoint is loaded as: how errors name it, and the flags that fix a wrong model.
MODEL_ROLES = {
    "teacher": ("teacher checkpoint", "fix the teacher model (--config.teacher_model for a "
                "single run, --config.stages.student.teacher_model for a pipeline config) or "
                "--config.teacher_checkpoint"),
    "student": ("student checkpoint", "fix --config.student_model or "
                "--config.student_checkpoint"),
    "model": ("checkpoint", "fix --model or --checkpoint"),
}


def _import_torch_checkpoint(path: str, model_name: str, variables_like: PyTree,
                             label: str) -> tuple[PyTree, dict]:
  """A PyTorch state_dict file in the published layout, placed as `variables_like`."""
  state_dict = torch_checkpoint.read_state_dict(path)
  try:
    variables = torch_layout.variables_from_torch_state_dict(model_name, state_dict,
                                                             variables_like)
  except ValueError as error:
    raise ValueError(f"{label} '{path}': {error}") from None
  variables = jax.tree.map(lambda array, like: jax.device_put(array, like.sharding),
                           variables, variables_like)
  return variables, {"model": model_name, "source": path, "input_mean": None, "input_std": None}


def load_exported_model(path: str, model_name: str, variables_like: PyTree,
                        role: str = "teacher") -> tuple[PyTree, dict]:
  """Loads an exported model into the shapes and shardings of `variables_like`.

  `path` is a jaxkd export (or the workdir of a finished run), or a PyTorch state_dict file
  in the model's published layout (`torch_checkpoint.is_torch_checkpoint`), imported on the fly.
  Raises a ValueError naming the mismatching entries when the checkpoint was made by
  another architecture or class count; `role` (a key of MODEL_ROLES) says how it names the
  checkpoint and which flags it suggests.
  """
  label, fix = MODEL_ROLES[role]
  if torch_checkpoint.is_torch_checkpoint(path):
    return _import_torch_checkpoint(path, model_name, variables_like, label)
  export_dir = find_export_dir(path)
  description = read_description(export_dir)
  if description.get("model") != model_name:
    raise ValueError(f"{label} '{path}' holds a '{description.get('model')}' model, but the "
                     f"config names '{model_name}': {fix}")
  checkpointer = ocp.StandardCheckpointer()
  variables_dir = os.path.join(export_dir, "variables")
  stored = checkpointer.metadata(variables_dir).item_metadata.tree
  problems = shape_differences(_dotted_shapes(stored), _dotted_shapes(variables_like))
  if problems:
    raise ValueError(f"{label} '{path}' does not match model '{model_name}' with "
                     f"this data set's classes: " + "; ".join(problems[:5]) +
                     (f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""))
  variables = checkpointer.restore(variables_dir, _abstract(variables_like))
  return variables, description


def move_aside(path: str, reason: str) -> str:
  """Renames `path` to `<path>.<reason>-<time>` on process 0 (never deletes); returns it."""
  target = f"{path.rstrip(os.sep)}.{reason}-{time.strftime('%Y%m%dT%H%M%S')}"
  if jax.process_index() == 0:
    os.rename(path, target)
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices(f"jaxkd_move_aside_{os.path.basename(target)}")
  return target


def has_results(workdir: str) -> bool:
  """Whether `workdir` holds a checkpoint, an export or a summary of a run."""
  checkpoints = os.path.join(workdir, "checkpoints")
  return (os.path.exists(os.path.join(workdir, "summary.json"))
          or os.path.exists(os.path.join(workdir, EXPORT_DIR))
          or (os.path.isdir(checkpoints) and any(n.isdigit() for n in os.listdir(checkpoints))))
