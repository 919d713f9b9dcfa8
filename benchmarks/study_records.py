"""A study's records kept apart from its workdir: finished runs survive a lost machine.

A finished run's results are its small JSON records (`summary.json`, and for a pipeline each
stage's too, with `fingerprint.json`), which are all that `--write-results` and the skip of
finished runs read. `save` copies the records of the finished runs from the study's workdir
to a records folder (one that can be committed: a few KiB a run, no checkpoints); `restore`
copies them back into a workdir where they are missing, so that a study resumed on another
machine skips the runs already done and writes the same table.
"""

import os
import shutil
from typing import Iterable

RECORD_FILES = ("summary.json", "fingerprint.json")


def _records_under(directory: str) -> Iterable[str]:
  """Paths, relative to `directory`, of every record file below it."""
  for root, _, files in os.walk(directory):
    for name in files:
      if name in RECORD_FILES:
        yield os.path.relpath(os.path.join(root, name), directory)


def save(run_workdirs: Iterable[str], study_workdir: str, records_dir: str) -> int:
  """Copies the records of each finished run's workdir (under `study_workdir`) to the same
  place under `records_dir`; returns how many files it copied."""
  copied = 0
  for workdir in run_workdirs:
    for relative in _records_under(workdir):
      source = os.path.join(workdir, relative)
      target = os.path.join(records_dir, os.path.relpath(source, study_workdir))
      os.makedirs(os.path.dirname(target), exist_ok=True)
      shutil.copyfile(source, target)
      copied += 1
  return copied


def restore(records_dir: str, study_workdir: str) -> int:
  """Copies every record of `records_dir` into `study_workdir` where that file is missing
  (a run present in the workdir keeps its own); returns how many files it copied."""
  if not os.path.isdir(records_dir):
    return 0
  copied = 0
  for relative in _records_under(records_dir):
    target = os.path.join(study_workdir, relative)
    if not os.path.exists(target):
      os.makedirs(os.path.dirname(target), exist_ok=True)
      shutil.copyfile(os.path.join(records_dir, relative), target)
      copied += 1
  return copied
