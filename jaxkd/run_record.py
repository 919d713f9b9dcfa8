"""Run records (`fingerprint.json`): what a workdir's results came from.

A record holds the run's resolved config, less the fields that do not change what it
computes (`RESUMABLE_FIELDS`), and a fingerprint of every export it consumed (teachers, a
starting student). A rerun whose record differs stops (`StaleRunError`) instead of mixing
results of two configs; `record_changes` says what differs, field by field.
"""

import hashlib
import json
import os
from typing import Any

import ml_collections

from jaxkd import checkpoint, reporting, torch_checkpoint

RECORD_FILE = "fingerprint.json"


class StaleRunError(ValueError):
  """A workdir holds results of another config or teacher than the one given now."""


# Fields that do not change what a run computes, or may change when it resumes: where data
# and checkpoints live, how it is logged, evaluated and checkpointed, kernels chosen per
# machine, `max_steps` (a longer one extends a shorter run), and whether it trained with
# other seeds or settings (a replica records the single run it is). Checkpoint paths are replaced by the
# fingerprints of the exports they name (`input_fingerprints`).
RESUMABLE_FIELDS = ("data_dir", "input_path", "conv_impl", "eval_batch_size", "max_steps",
                    "log_every_steps", "eval_every_epochs", "eval_every_steps",
                    "checkpoint_every_steps", "keep_checkpoints", "restart_stages",
                    "teacher_checkpoint", "student_checkpoint", "num_replicas", "seeds",
                    "sweep")


def _flatten(tree: dict, prefix: str = "") -> dict[str, Any]:
  flat = {}
  for key, value in tree.items():
    if isinstance(value, dict):
      flat.update(_flatten(value, f"{prefix}{key}."))
    else:
      flat[f"{prefix}{key}"] = value
  return flat


def config_fingerprint(config: ml_collections.ConfigDict) -> dict[str, Any]:
  """`{'optimizer.learning_rate': 0.05, ...}`: the run's fields that change its results,
  as JSON stores them."""
  flat = _flatten(config.to_dict())
  return json.loads(json.dumps({k: v for k, v in sorted(flat.items())
                                if k.split(".")[0] not in RESUMABLE_FIELDS}))


def _sha256_file(path: str) -> str:
  digest = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      digest.update(block)
  return digest.hexdigest()


def export_fingerprint(path: str) -> dict[str, Any]:
  """What identifies the model at `path`: the sha256 of a jaxkd export's model.json (which
  names its run's config fingerprint and step) or of a PyTorch file, and its step."""
  if torch_checkpoint.is_torch_checkpoint(path):
    return {"sha256": _sha256_file(path), "step": None}
  model_json = os.path.join(checkpoint.find_export_dir(path), "model.json")
  with open(model_json) as f:
    step = json.load(f).get("step")
  return {"sha256": _sha256_file(model_json), "step": step}


def input_fingerprints(teachers: tuple[str, ...], student: str) -> dict[str, dict[str, Any]]:
  """`{'teacher 0': ..., 'student start': ...}`: the exports a run loads."""
  inputs = {f"teacher {i}": export_fingerprint(path) for i, path in enumerate(teachers)}
  if student:
    inputs["student start"] = export_fingerprint(student)
  return inputs


def make_record(config: ml_collections.ConfigDict,
               inputs: dict[str, dict[str, Any]]) -> dict[str, Any]:
  """A fresh record of a run of `config` from `inputs` (`input_fingerprints`)."""
  return {"config": config_fingerprint(config), "inputs": inputs, "diverged_at_step": None,
          "amendments": []}


def record_hash(record: dict[str, Any]) -> str:
  """A short hash of a record's config and inputs: a run's identity, in its export."""
  identity = json.dumps({"config": record["config"], "inputs": record["inputs"]},
                        sort_keys=True)
  return hashlib.sha256(identity.encode()).hexdigest()[:16]


def _describe_input(name: str, old: dict | None, new: dict | None) -> str:
  if old is None or new is None:
    return f"{name}: {'none' if old is None else 'given'} → {'none' if new is None else 'given'}"
  if old["step"] != new["step"]:
    return f"{name}: step {old['step']} → {new['step']}"
  return f"{name}: another model (same step {new['step']})"


def record_changes(recorded: dict[str, Any], current: dict[str, Any]) -> list[str]:
  """'field: old → new' for every config field and input export that differs."""
  old, new = recorded["config"], current["config"]
  changes = [f"{k}: {old.get(k, '(unset)')!r} → {new.get(k, '(unset)')!r}"
             for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
  old_inputs, new_inputs = recorded["inputs"], current["inputs"]
  changes += [_describe_input(k, old_inputs.get(k), new_inputs.get(k))
              for k in sorted(set(old_inputs) | set(new_inputs))
              if (old_inputs.get(k) or {}).get("sha256") != (new_inputs.get(k) or {}).get("sha256")]
  return changes


def read_record(workdir: str) -> dict[str, Any] | None:
  """The record of the run in `workdir`, or None when it has none."""
  return reporting.read_json(workdir, RECORD_FILE)


def write_record(workdir: str, record: dict[str, Any]) -> None:
  """Writes `fingerprint.json` atomically, on process 0 only."""
  reporting.write_json(workdir, RECORD_FILE, record)
