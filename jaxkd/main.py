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
    summary = train.train_and_evaluate(_CONFIG.value, _WORKDIR.value)
  except (ValueError, FileNotFoundError, FloatingPointError) as error:
    logging.error("%s", error)
    sys.exit(f"jaxkd: {error}")
  print(results_table(summary))


def results_table(summary: dict) -> str:
  """One line per run (per stage of a pipeline): what was trained and how well.

  `test acc` is the test accuracy at the last step; `test@best` the test accuracy at the step
  that scored best on the split named under `chosen by` (validation when the run holds one out).
  """
  runs = summary.get("stages", {"run": summary})
  lines = [f"{'stage':10s} {'method':18s} {'model':12s} {'test acc':>9s} {'test@best':>9s} "
           f"{'chosen by':>10s} {'steps':>7s} {'wall s':>7s}"]
  for name, run in runs.items():
    final, at_best = run["final_test_accuracy"], run["test_accuracy_at_best"]
    lines.append(f"{name:10s} {run['method']:18s} {run.get('student_model', ''):12s} "
                 f"{final if final is None else f'{final:.4f}':>9} "
                 f"{at_best if at_best is None else f'{at_best:.4f}':>9} "
                 f"{run['best_selected_by']:>10s} {run['steps']:7d} {run['wall_time_s']:7.1f}")
  return "\n".join(lines)


if __name__ == "__main__":
  app.run(main)
