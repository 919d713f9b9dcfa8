"""Multi-host start-up: `jax.distributed.initialize()` when the launcher asks for it.

Launchers (see `launch/`) start one process per host (TPU VM pods, SLURM nodes) or per
GPU. JAX finds the coordinator itself on Cloud TPU and under SLURM; elsewhere it is
given through the flags or the environment variables JAX documents
(`JAX_COORDINATOR_ADDRESS`, `JAX_NUM_PROCESSES`, `JAX_PROCESS_ID`).
"""

import os

import jax
from absl import logging


def is_multi_process_launch() -> bool:
  """True when the environment describes a launch of several processes."""
  if os.environ.get("JAX_COORDINATOR_ADDRESS"):
    return True
  slurm_tasks = int(os.environ.get("SLURM_NTASKS", "1"))
  tpu_workers = os.environ.get("TPU_WORKER_HOSTNAMES", "")
  return slurm_tasks > 1 or "," in tpu_workers


def initialize(coordinator_address: str | None = None, num_processes: int | None = None,
               process_id: int | None = None) -> None:
  """Joins the multi-process JAX runtime if this launch has several processes."""
  explicit = coordinator_address is not None
  if not (explicit or is_multi_process_launch()):
    return
  jax.distributed.initialize(coordinator_address=coordinator_address,
                             num_processes=num_processes, process_id=process_id)
  logging.info("Process %d of %d; %d local and %d global devices.", jax.process_index(),
               jax.process_count(), jax.local_device_count(), jax.device_count())
