"""One writer per workdir: an exclusive lock that the operating system drops with its process.

`hold(workdir)` takes `flock(LOCK_EX | LOCK_NB)` on `workdir/.jaxkd.lock` for as long as the
run lasts and writes who holds it (pid, host, start time) into the file. A second process on
the same workdir stops at once with `WorkdirInUse`, naming the holder. The lock belongs to
the open file, so a holder that dies in any way (kill -9, out of memory, a preempted node)
releases it with its process: no stale lock ever blocks a rerun, and the file itself is
never deleted (deleting it would let two processes lock two different files).

With several processes (multi-host), process 0 alone takes the lock and the others wait for
its verdict, so a run holds one lock. `flock` holds between hosts on NFSv4 and on Lustre or
GPFS mounted with locking; object-store mounts (gcsfuse, s3fs) ignore it.
"""

import contextlib
import datetime
import fcntl
import json
import os
import socket
from typing import Iterator

import jax
import numpy as np
from jax.experimental import multihost_utils

LOCK_FILE = ".jaxkd.lock"


class WorkdirInUse(ValueError):
  """Another live process holds the workdir; the message names it and what to do."""


def _holder_text(path: str) -> str:
  try:
    with open(path, encoding="utf-8") as file:
      holder = json.load(file)
    return (f"process {holder['pid']} on host {holder['host']} since {holder['since']}; "
            f"wait for it to finish or stop it (kill {holder['pid']} on {holder['host']})")
  except (OSError, ValueError, KeyError, TypeError):
    return "another process (it has not written its name yet); wait for it or stop it"


def _lock(workdir: str) -> int:
  """The descriptor of the locked file; WorkdirInUse if another process holds it."""
  path = os.path.join(workdir, LOCK_FILE)
  descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
  try:
    fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
  except BlockingIOError:
    os.close(descriptor)
    raise WorkdirInUse(f"--workdir={workdir} is in use by {_holder_text(path)}; or give "
                       "another --workdir") from None
  holder = {"pid": os.getpid(), "host": socket.gethostname(),
            "since": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}
  os.ftruncate(descriptor, 0)
  os.pwrite(descriptor, json.dumps(holder).encode(), 0)
  return descriptor


def _verdict_of_process_0(error: str) -> str:
  """Process 0's error ('' when it holds the lock), broadcast to every process."""
  if jax.process_count() == 1:
    return error
  encoded = np.zeros(1024, np.uint8)
  text = error.encode()[:1024]
  encoded[:len(text)] = np.frombuffer(text, np.uint8)
  shared = np.asarray(multihost_utils.broadcast_one_to_all(encoded))
  return bytes(shared[shared > 0]).decode(errors="replace")


@contextlib.contextmanager
def hold(workdir: str, process_index: int = 0) -> Iterator[None]:
  """Holds `workdir`'s lock for the duration of the `with` block (see the module docstring).

  Raises:
    WorkdirInUse: another live process holds it (in every process of a multi-host run).
  """
  descriptor, error = None, ""
  if process_index == 0:
    try:
      descriptor = _lock(workdir)
    except WorkdirInUse as busy:
      error = str(busy)
  error = _verdict_of_process_0(error)
  if error:
    if descriptor is not None:
      os.close(descriptor)
    raise WorkdirInUse(error)
  try:
    yield
  finally:
    if descriptor is not None:
      os.close(descriptor)  # Releases the lock; the file stays.
