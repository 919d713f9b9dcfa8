"""Checkpoints: resume, last N + best, and the exported model a later run loads as its teacher.

Layout of a workdir:
    checkpoints/<step>/     the last `keep` train states (orbax CheckpointManager)
    best/<step>/            the train state with the best eval accuracy so far
    export/variables/       the trained model alone (`params`, `batch_stats`)
    export/model.json       what it is: model name, classes, data set, accuracy

A teacher may also be a PyTorch state_dict file in its model's published layout
(`jaxkd.torch_layout`), imported when loaded.

Orbax writes each checkpoint to a temporary directory and renames it when complete,
so a run killed mid-save leaves the previous checkpoint intact.
"""

import json
import os
from typing import Any

import jax
from jax.experimental import multihost_utils
import numpy as np
import orbax.checkpoint as ocp

from jaxkd import torch_checkpoint, torch_layout

PyTree = Any
EXPORT_DIR = "export"


def _abstract(tree: PyTree) -> PyTree:
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), tree)


def _manager_options(keep: int, name: str) -> ocp.CheckpointManagerOptions:
  """Options of one manager; `name` keeps its multi-process barriers apart from the other's,
  which saves the same step at the same time."""
  return ocp.CheckpointManagerOptions(
      max_to_keep=keep, create=True,
      multiprocessing_options=ocp.options.MultiprocessingOptions(barrier_sync_key_prefix=name))


class CheckpointStore:
  """The last `keep` train states plus the best one, each with a small JSON of progress."""

  def __init__(self, workdir: str, keep: int):
    self._last = ocp.CheckpointManager(
        os.path.join(os.path.abspath(workdir), "checkpoints"),
        options=_manager_options(keep, "last"), item_names=("state", "progress"))
    self._best = ocp.CheckpointManager(
        os.path.join(os.path.abspath(workdir), "best"),
        options=_manager_options(1, "best"), item_names=("state", "progress"))

  def latest_step(self) -> int | None:
    return self._last.latest_step()

  def save(self, step: int, state: PyTree, progress: dict, *, is_best: bool) -> None:
    args = ocp.args.Composite(state=ocp.args.StandardSave(state),
                              progress=ocp.args.JsonSave(progress))
    self._last.save(step, args=args, force=True)
    if is_best:
      self._best.save(step, args=args, force=True)

  def restore_latest(self, state_like: PyTree) -> tuple[PyTree, dict]:
    """The latest train state, restored with the shardings of `state_like`, and its progress."""
    restored = self._last.restore(
        self._last.latest_step(),
        args=ocp.args.Composite(state=ocp.args.StandardRestore(_abstract(state_like)),
                                progress=ocp.args.JsonRestore()))
    return restored["state"], restored["progress"]

  def close(self) -> None:
    self._last.wait_until_finished()
    self._best.wait_until_finished()
    self._last.close()
    self._best.close()


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


def _export_dir(path: str) -> str:
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
  with open(os.path.join(_export_dir(path), "model.json")) as f:
    return json.load(f)


def _import_torch_checkpoint(path: str, model_name: str,
                             variables_like: PyTree) -> tuple[PyTree, dict]:
  """A PyTorch state_dict file in the published layout, placed as `variables_like`."""
  state_dict = torch_checkpoint.read_state_dict(path)
  try:
    variables = torch_layout.variables_from_torch_state_dict(model_name, state_dict,
                                                             variables_like)
  except ValueError as error:
    raise ValueError(f"teacher checkpoint '{path}': {error}") from None
  variables = jax.tree.map(lambda array, like: jax.device_put(array, like.sharding),
                           variables, variables_like)
  return variables, {"model": model_name, "source": path, "input_mean": None, "input_std": None}


def load_exported_model(path: str, model_name: str, variables_like: PyTree) -> tuple[PyTree, dict]:
  """Loads an exported model into the shapes and shardings of `variables_like`.

  `path` is a jaxkd export (or the workdir of a finished run), or a PyTorch state_dict file
  in the model's published layout (`torch_checkpoint.is_torch_checkpoint`), imported on the fly.
  Raises a ValueError naming the mismatching entries when the checkpoint was made by
  another architecture or class count.
  """
  if torch_checkpoint.is_torch_checkpoint(path):
    return _import_torch_checkpoint(path, model_name, variables_like)
  export_dir = _export_dir(path)
  description = read_description(export_dir)
  if description.get("model") != model_name:
    raise ValueError(f"teacher checkpoint '{path}' holds a '{description.get('model')}' model, "
                     f"but the config names '{model_name}': fix the teacher model "
                     "(--config.teacher_model for a single run, "
                     "--config.stages.student.teacher_model for a pipeline config) "
                     "or --config.teacher_checkpoint")
  checkpointer = ocp.StandardCheckpointer()
  variables_dir = os.path.join(export_dir, "variables")
  stored = checkpointer.metadata(variables_dir).item_metadata.tree
  expected = jax.tree_util.tree_flatten_with_path(variables_like)[0]
  found = {jax.tree_util.keystr(k): tuple(v.shape)
           for k, v in jax.tree_util.tree_flatten_with_path(stored)[0]}
  problems = []
  for key_path, leaf in expected:
    key = jax.tree_util.keystr(key_path)
    if key not in found:
      problems.append(f"{key} missing")
    elif found[key] != tuple(np.shape(leaf)):
      problems.append(f"{key} has shape {found[key]}, expected {tuple(np.shape(leaf))}")
  extra = set(found) - {jax.tree_util.keystr(k) for k, _ in expected}
  problems += [f"{key} unexpected" for key in sorted(extra)]
  if problems:
    raise ValueError(f"teacher checkpoint '{path}' does not match model '{model_name}' with "
                     f"this data set's classes: " + "; ".join(problems[:5]) +
                     (f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""))
  variables = checkpointer.restore(variables_dir, _abstract(variables_like))
  return variables, description
