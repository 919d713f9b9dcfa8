"""Command line: `python -m jaxkd.main --config=configs/X.py --workdir=DIR [--config.a.b=v ...]`.

Parses flags, joins the multi-process runtime when launched on several hosts, and
calls `jaxkd.train.train_and_evaluate`.
"""

import sys

from absl import app, flags, logging
from ml_collections import config_flags

from jaxkd import distributed

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Path to a config file (configs/*.py); fields are overridden with "
    "--config.field=value.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics and "
                               "summary.json; a run resumes from it.")
_COORDINATOR = flags.DEFINE_string("coordinator_address", None, "host:port of process 0, for "
                                   "multi-process runs outside SLURM and Cloud TPU.")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Number of processes.")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "This process's index.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  distributed.initialize(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
  from jaxkd import train  # After distributed start-up, which must precede any JAX computation.
  try:
    train.train_and_evaluate(_CONFIG.value, _WORKDIR.value)
  except (ValueError, FileNotFoundError, FloatingPointError) as error:
    logging.error("%s", error)
    sys.exit(f"jaxkd: {error}")


if __name__ == "__main__":
  app.run(main)
