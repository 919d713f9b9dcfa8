"""Throughput of jaxkd's input paths, next to the train step they feed.

    python -m benchmarks.input --quick
    python -m benchmarks.input --dataset cifar10_jpeg --paths device,tfdata --write-results

For each input path of `jaxkd.data.create_input` ('device': the split held on the
devices and augmented there; 'tfdata': a tf.data pipeline on the host) this times the
global training batches coming out of `train_batches(0)`, each waited for with
`jax.block_until_ready`, and reports the median images/s over rounds. The time to build
the input (reading the split, preparing the data set on first use) is reported apart.
The CE train step of `--model` on a synthetic batch of the same shape is timed too
(`benchmarks.step`): an input path slower than the step is the bottleneck of training.
"""

import argparse
import dataclasses
import sys
import time
import traceback
from typing import Sequence

import jax

from benchmarks import common
from benchmarks import step as step_benchmark
from jaxkd import data, recipes, reporting
from jaxkd import step as step_lib

INPUT_PATHS = ("device", "tfdata")
# Batches are cheap next to steps: many more of them make a round.
INPUT_FULL = common.Repetitions(rounds=5, steps_per_round=50, warmup_steps=5)
INPUT_QUICK = common.Repetitions(rounds=2, steps_per_round=10, warmup_steps=2)


@dataclasses.dataclass
class InputResult:
  """One input path's measurement; `error` is set (and the rest None) when it failed."""
  input_path: str
  images_per_s: float | None = None
  setup_seconds: float | None = None
  first_batch_seconds: float | None = None
  error: str | None = None


def input_config(dataset: str, input_path: str, batch_size: int, data_dir: str):
  config = recipes.cifar_run("ce", "resnet8x4", dataset)
  config.input_path = input_path
  config.batch_size = batch_size
  config.data_dir = data_dir
  return config


def measure_input(config, reps: common.Repetitions, mesh) -> InputResult:
  """Times `create_input`, the first training batch, then rounds of batches."""
  result = InputResult(config.input_path)
  start = time.perf_counter()
  inputs = data.create_input(config, mesh)
  result.setup_seconds = time.perf_counter() - start
  batches = inputs.train_batches(0)
  start = time.perf_counter()
  jax.block_until_ready(next(batches))
  result.first_batch_seconds = time.perf_counter() - start
  for _ in range(reps.warmup_steps):
    jax.block_until_ready(next(batches))
  round_seconds = []
  for _ in range(reps.rounds):
    start = time.perf_counter()
    for _ in range(reps.steps_per_round):
      jax.block_until_ready(next(batches))
    round_seconds.append(time.perf_counter() - start)
  result.images_per_s = common.median_rate(reps.steps_per_round * config.batch_size,
                                           round_seconds)
  return result


def results_table(results: Sequence[InputResult],
                  step_result: step_benchmark.StepResult) -> list[str]:
  step_rate = step_result.jax_images_per_s
  step_text = (f"failed: {step_result.error}" if step_result.error
               else common.format_number(step_rate))
  headers = ("input path", "input images/s", "create_input s", "first batch s",
             f"train step images/s ({step_result.case.label()})", "input / step")
  rows = []
  for r in results:
    if r.error:
      rows.append((r.input_path, f"failed: {r.error}", "—", "—", step_text, "—"))
      continue
    ratio = r.images_per_s / step_rate if step_rate else None
    rows.append((r.input_path, common.format_number(r.images_per_s),
                 common.format_number(r.setup_seconds),
                 common.format_number(r.first_batch_seconds, 2), step_text,
                 common.format_number(ratio, 1)))
  return common.markdown_table(headers, rows)


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
  parser = argparse.ArgumentParser(prog="python -m benchmarks.input", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--dataset", default="cifar10_jpeg")
  parser.add_argument("--data-dir", default="", help="TFDS data_dir ('' = TFDS's default)")
  parser.add_argument("--paths", default=",".join(INPUT_PATHS),
                      help=f"comma list of input paths among {', '.join(INPUT_PATHS)}")
  parser.add_argument("--batch", type=int, default=64, help="global batch size")
  parser.add_argument("--model", default="resnet8x4", help="student of the CE step timed beside")
  parser.add_argument("--precision", choices=step_benchmark.PRECISIONS, default="auto")
  parser.add_argument("--quick", action="store_true", help="fewer repetitions (noisy numbers)")
  parser.add_argument("--device-label", default=None,
                      help="hardware text for RESULTS.md (default: detected)")
  parser.add_argument("--write-results", action="store_true",
                      help="regenerate this harness's section of benchmarks/RESULTS.md")
  parser.add_argument("--results-path", default=common.RESULTS_PATH)
  return parser.parse_args(argv)


def run_from_args(args: argparse.Namespace,
                  argv: Sequence[str]) -> tuple[list[InputResult], step_benchmark.StepResult]:
  """Measures each input path and the train step, prints a table, writes RESULTS.md if asked."""
  paths = common.comma_list(args.paths, INPUT_PATHS, "--paths")
  mesh = step_lib.create_mesh()
  input_reps = INPUT_QUICK if args.quick else INPUT_FULL
  hardware = args.device_label or reporting.hardware_description()
  print(f"{hardware}; input {input_reps}", flush=True)
  results = []
  for path in paths:
    config = input_config(args.dataset, path, args.batch, args.data_dir)
    try:
      result = measure_input(config, input_reps, mesh)
    except Exception as error:  # pylint: disable=broad-except
      traceback.print_exc()
      result = InputResult(path, error=f"{type(error).__name__}: {error}")
    print(f"input path {path}: {common.format_number(result.images_per_s)} images/s"
          + (f" FAILED {result.error}" if result.error else
             f" (create_input {common.format_number(result.setup_seconds)} s)"), flush=True)
    results.append(result)
  step_reps = common.repetitions(args.quick)
  case = step_benchmark.StepCase("ce", "", args.model, args.batch,
                                 step_benchmark.resolve_bf16(args.precision), args.dataset)
  (step_result,) = step_benchmark.run_cases([case], step_reps,
                                            log=lambda line: print(line, flush=True))
  table = results_table(results, step_result)
  print("\n".join(table), flush=True)
  if args.write_results:
    extra = [f"Data set: {args.dataset}, global batch {args.batch}",
             f"Input: {input_reps.rounds} rounds of {input_reps.steps_per_round} batches after "
             f"{input_reps.warmup_steps} warm-up batches; train step: {step_reps.rounds} rounds "
             f"of {step_reps.steps_per_round} step(s); median images/s"]
    lines = [f"## Input paths on {jax.default_backend()}", "", *common.run_description(
        common.command_line("benchmarks.input", argv), hardware, extra), "", *table]
    common.write_results_section(f"benchmarks.input.{jax.default_backend()}", lines,
                                 args.results_path)
  return results, step_result


def main(argv: Sequence[str]) -> int:
  results, step_result = run_from_args(parse_args(argv), argv)
  return 1 if step_result.error or any(r.error for r in results) else 0


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))
