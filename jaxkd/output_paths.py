"""Where the commands write: never over a run or a model unless told, and failures in one line.

`check_output(path, flag, overwrite, kind)` runs before a command does any work. It refuses
a path that holds a training run (summary.json, checkpoints/, a `.jaxkd.lock` ...), a checkpoint
or an exported model (model.json, variables/), or a model file, unless `--overwrite` is given;
a directory where a file goes, a file where a directory goes, and a path that cannot be written
(under a regular file, or in a directory without write permission). `writing(path, flag)` turns
an OSError of the write itself (a full disk) into the same kind of one-line `OutputError`.
"""

import contextlib
import enum
import errno
import os
from typing import Iterator

from jaxkd import torch_checkpoint

RUN_ENTRIES = ("summary.json", "checkpoints", "best", "fingerprint.json", ".jaxkd.lock", "export")
EXPORT_ENTRIES = ("model.json", "variables")
CHECKPOINT_ENTRIES = ("_CHECKPOINT_METADATA",)  # What orbax writes into every checkpoint.


class OutputError(ValueError):
  """An output path a command must not or cannot write; the message says what to do."""


class Kind(enum.Enum):
  """What a command writes at its output path."""
  FILE = "file"
  DIRECTORY = "directory"


def _entries(directory: str, names: tuple[str, ...]) -> list[str]:
  """Those of `names` present in `directory`, folders marked with a trailing '/'."""
  present = [name for name in names if os.path.lexists(os.path.join(directory, name))]
  return [name + "/" if os.path.isdir(os.path.join(directory, name)) else name
          for name in present]


def held_by(path: str) -> str:
  """What `path` holds that a command must not silently write over, e.g. 'a training run
  (summary.json, checkpoints/)'; '' when it holds none of that (or does not exist)."""
  if os.path.isdir(path):
    for label, names in (("a training run", RUN_ENTRIES), ("an exported model", EXPORT_ENTRIES),
                         ("a checkpoint", CHECKPOINT_ENTRIES)):
      found = _entries(path, names)
      if found:
        return f"{label} ({', '.join(found)})"
    return ""
  name = os.path.basename(path)
  if os.path.isfile(path) and torch_checkpoint.is_torch_checkpoint(path):
    return "a model file"
  if os.path.isfile(path) and name in RUN_ENTRIES + EXPORT_ENTRIES:
    return f"the {name} of a run or an export"
  return ""


def _nearest_existing(path: str) -> str:
  """`path` itself, or the closest of its ancestors that exists."""
  path = os.path.abspath(path)
  while not os.path.lexists(path):
    path = os.path.dirname(path)
  return path


def _unwritable_reason(path: str) -> str:
  """Why `path` cannot be created or written ('' when it can): a file is written in its
  directory (beside it, then renamed), a directory in itself."""
  target = path if os.path.isdir(path) else os.path.dirname(os.path.abspath(path))
  ancestor = _nearest_existing(target)
  if not os.path.isdir(ancestor):
    return f"{ancestor} is a file, not a directory"
  if not os.access(ancestor, os.W_OK | os.X_OK):
    return f"no permission to write in {ancestor}"
  return ""


def check_output(path: str, flag: str, overwrite: bool, kind: Kind) -> None:
  """Raises OutputError unless the command may write its `kind` of output at `path` (see the
  module docstring); `flag` names the option that gave `path`, e.g. '--out'."""
  if kind is Kind.FILE and os.path.isdir(path):
    raise OutputError(f"{flag}={path} is a directory: give the path of a file")
  if kind is Kind.DIRECTORY and os.path.isfile(path):
    raise OutputError(f"{flag}={path} is a file: give a directory")
  held = held_by(path)
  if held and not overwrite:
    raise OutputError(f"{flag}={path} holds {held}: give another {flag}, or --overwrite to "
                      "write over it")
  reason = _unwritable_reason(path)
  if reason:
    raise OutputError(f"{flag}={path} cannot be written ({reason}): give a path you can "
                      "write to")


@contextlib.contextmanager
def writing(path: str, flag: str) -> Iterator[None]:
  """Runs the write of `path`; an OSError (a full disk, a path that vanished) becomes one
  OutputError line naming `flag`."""
  try:
    yield
  except OSError as error:
    fix = ("free space on its disk, or give another " if error.errno == errno.ENOSPC
           else "give another ")
    raise OutputError(f"{flag}={path} could not be written ({error.strerror or error}): "
                      f"{fix}{flag}") from None
