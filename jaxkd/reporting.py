"""Metrics out of a run: clu metric writers (TensorBoard + log) and `summary.json`."""

import json
import os
import platform
from typing import Any, Mapping

import jax
from absl import logging

SUMMARY_FILE = "summary.json"


class LogOnlyWriter:
  """The metric-writer interface, logging scalars only (for machines without TensorFlow)."""

  def write_scalars(self, step: int, scalars: Mapping[str, float]) -> None:
    logging.info("[%d] %s", step, ", ".join(f"{k}={float(v):.6g}" for k, v in scalars.items()))

  def flush(self) -> None:
    pass


def create_writer(workdir: str):
  """clu writers: TensorBoard event files in `workdir` and the log on process 0, the log only
  elsewhere. clu's writers import TensorFlow; without it, metrics go to the log alone."""
  try:
    from clu import metric_writers  # pylint: disable=g-import-not-at-top
  except ImportError:
    logging.warning("clu.metric_writers needs TensorFlow, which is missing: metrics go to the "
                    "log only.")
    return LogOnlyWriter()
  return metric_writers.create_default_writer(workdir, just_logging=jax.process_index() > 0)


def hardware_description() -> str:
  devices = jax.devices()
  return (f"{len(devices)}x {devices[0].device_kind} ({jax.default_backend()}), "
          f"{jax.process_count()} process(es), host {platform.machine()} "
          f"with {os.cpu_count()} CPU cores")


def read_json(workdir: str, filename: str) -> Any:
  """The JSON file `workdir/filename`, or None when it does not exist."""
  path = os.path.join(workdir, filename)
  if not os.path.exists(path):
    return None
  with open(path) as f:
    return json.load(f)


def write_json(workdir: str, filename: str, value: Any) -> None:
  """Writes `workdir/filename` atomically (write, then rename), on process 0 only."""
  if jax.process_index() != 0:
    return
  path = os.path.join(workdir, filename)
  with open(path + ".tmp", "w") as f:
    json.dump(value, f, indent=2, sort_keys=True)
  os.replace(path + ".tmp", path)


def read_summary(workdir: str) -> dict[str, Any] | None:
  return read_json(workdir, SUMMARY_FILE)


def write_summary(workdir: str, summary: Mapping[str, Any]) -> None:
  """Writes `summary.json` atomically, on process 0 only."""
  write_json(workdir, SUMMARY_FILE, summary)
