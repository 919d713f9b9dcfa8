"""The train metrics of every step, summed on the device, and the first non-finite step.

Metrics are scalars, or vectors with one entry per replica in a replicated run.
"""

import jax
import jax.numpy as jnp
import numpy as np

from jaxkd import step as step_lib


@jax.jit
def _observe(health: dict, window: dict, metrics: dict, into_window: jax.Array
             ) -> tuple[dict, dict]:
  """Adds a step's metrics to the window (if `into_window`), and notes in `health` the first
  step whose loss terms or state were not finite, with what was not: on the device."""
  metrics = dict(metrics)
  nonfinite = metrics.pop(step_lib.NONFINITE)
  step = health["step"] + 1
  first = (health["first_bad_step"] < 0) & jnp.any(jnp.stack(list(nonfinite.values())))
  health = {"step": step, "first_bad_step": jnp.where(first, step, health["first_bad_step"]),
            "nonfinite": jax.tree.map(lambda old, new: jnp.where(first, new, old),
                                      health["nonfinite"], nonfinite)}
  window = jax.tree.map(lambda total, value: jnp.where(into_window, total + value, total),
                        window, metrics)
  return health, window


class StepTracker:
  """The device-side running sums of the train metrics and the first non-finite step: no
  host sync per step; `first_non_finite` and `take_means` fetch them at boundaries."""

  def __init__(self, start_step: int):
    self.health, self.window, self.window_steps = None, None, 0
    self._start_step = start_step
    self._into_window = {}  # {bool: the device scalar}, made once.

  def add(self, metrics: dict, into_window: bool) -> None:
    if self.health is None:
      self.health = {"step": jnp.int32(self._start_step), "first_bad_step": jnp.int32(-1),
                     "nonfinite": jax.tree.map(jnp.zeros_like, metrics[step_lib.NONFINITE])}
      self.window = {k: jnp.zeros_like(v) for k, v in metrics.items()
                     if k != step_lib.NONFINITE}
    flag = self._into_window.setdefault(into_window, jnp.bool_(into_window))
    self.health, self.window = _observe(self.health, self.window, metrics, flag)
    self.window_steps += int(into_window)

  def first_non_finite(self) -> tuple[int, list[str], list[int]] | None:
    """(step, names of the non-finite loss terms and state fields, indices of the replicas
    they were non-finite in) of the first bad step; None when every step was finite."""
    if self.health is None:
      return None
    host = jax.device_get({k: self.health[k] for k in ("first_bad_step", "nonfinite")})
    if host["first_bad_step"] < 0:
      return None
    flags = {name: np.atleast_1d(bad) for name, bad in host["nonfinite"].items()}
    names = [name for name, bad in flags.items() if bad.any()]
    replicas = sorted({int(k) for bad in flags.values() for k in np.flatnonzero(bad)})
    return int(host["first_bad_step"]), names, replicas

  def take_means(self, num_replicas: int = 1) -> list[dict[str, float]]:
    """The window's mean metrics of each replica; the window starts again."""
    sums = {k: np.broadcast_to(np.asarray(v, np.float64), (num_replicas,))
            for k, v in jax.device_get(self.window).items()}
    means = [{k: float(v[r]) / self.window_steps for k, v in sums.items()}
             for r in range(num_replicas)]
    self.window = jax.tree.map(jnp.zeros_like, self.window)
    self.window_steps = 0
    return means
