"""SIGTERM and SIGINT during training, acted on at a step boundary that every process agrees on."""

import signal
import threading

import jax
import numpy as np
from jax.experimental import multihost_utils


class StopSignals:
  """SIGTERM and SIGINT during training: noted by a handler, acted on at a step boundary.

  Several processes agree on that step: JAX's preemption service hears SIGTERM and picks a
  step itself (checked every step, locally); a SIGINT is shared at the boundaries where
  the trainer syncs anyway (log, evaluation, checkpoint). The handlers in place before are
  restored on exit; a second signal meets the previous handler (e.g. KeyboardInterrupt).

  The handlers are set by `arm`, which the trainer calls once its first step has run: before
  that (resuming, the first compile, which can take minutes) there is nothing to save, and a
  signal has its usual effect at once (SIGTERM ends the process) instead of waiting for the
  compile to end. The last checkpoint stays whole: checkpoints are written atomically.
  """

  def __init__(self):
    self.received = None
    self._previous = {}

  @staticmethod
  def _preemption_service() -> bool:
    return jax.process_count() > 1 and jax.config.jax_enable_preemption_service

  def __enter__(self) -> "StopSignals":
    return self

  def arm(self) -> None:
    """Notes SIGTERM and SIGINT from now on (a second call does nothing)."""
    if self._previous or threading.current_thread() is not threading.main_thread():
      return  # Set already, or cannot be: handlers can only be set from the main thread.
    signals = (signal.SIGINT,) if self._preemption_service() else (signal.SIGTERM, signal.SIGINT)
    for signum in signals:
      if signal.getsignal(signum) is not None:  # None: a handler not set from Python.
        self._previous[signum] = signal.signal(signum, self._note)

  def _note(self, signum, _) -> None:
    self.received = signal.Signals(signum).name
    signal.signal(signum, self._previous[signum])

  def __exit__(self, *_) -> None:
    for signum, handler in self._previous.items():
      signal.signal(signum, handler)

  def stopping(self) -> bool:
    """Whether a signal asks this process to stop now, mid-evaluation (never with several
    processes: they stop at a step they agree on, after it)."""
    return jax.process_count() == 1 and self.received is not None

  def stop_after(self, done: int, at_boundary: bool) -> bool:
    """Whether every process stops after step `done` (called by all, at every step)."""
    if jax.process_count() == 1:
      return self.received is not None
    if self._preemption_service() and multihost_utils.reached_preemption_sync_point(done):
      self.received = self.received or "SIGTERM"
      return True
    if not at_boundary:
      return False
    return bool(multihost_utils.process_allgather(np.int32(self.received is not None)).any())
