"""Metrics out of a run: clu metric writers (TensorBoard + log) and `summary.json`."""

import json
import os
import platform
from typing import Any, Mapping

import jax
from clu import metric_writers

SUMMARY_FILE = "summary.json"


def create_writer(workdir: str) -> metric_writers.MetricWriter:
  """TensorBoard event files in `workdir` and the log, on process 0; the log only elsewhere."""
  return metric_writers.create_default_writer(workdir, just_logging=jax.process_index() > 0)


def hardware_description() -> str:
  devices = jax.devices()
  return (f"{len(devices)}x {devices[0].device_kind} ({jax.default_backend()}), "
          f"{jax.process_count()} process(es), host {platform.machine()} "
          f"with {os.cpu_count()} CPU cores")


def read_summary(workdir: str) -> dict[str, Any] | None:
  path = os.path.join(workdir, SUMMARY_FILE)
  if not os.path.exists(path):
    return None
  with open(path) as f:
    return json.load(f)


def write_summary(workdir: str, summary: Mapping[str, Any]) -> None:
  """Writes `summary.json` atomically (write, then rename), on process 0 only."""
  if jax.process_index() != 0:
    return
  path = os.path.join(workdir, SUMMARY_FILE)
  with open(path + ".tmp", "w") as f:
    json.dump(summary, f, indent=2, sort_keys=True)
  os.replace(path + ".tmp", path)
