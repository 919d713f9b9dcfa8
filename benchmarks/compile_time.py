"""Compile seconds of the real train step, cold and warm (from the persistent cache).

    python -m benchmarks.compile_time --method atsc,simkd,kd,dkd \\
        --pair resnet56:resnet20,resnet32x4:resnet8x4 --batch 64 --write-results

Each (method, pair) runs twice as a fresh process, both on one new, empty compilation cache
(`jaxkd.compile_cache`): the cold process compiles the step and stores it, the warm one
finds it there, as a resumed run, another seed or the next run of a study with the same
shapes does. Each process builds the step as training does (`benchmarks.step.JaxTrainStep`:
`build_run` on a CIFAR-recipe config, randomly initialised teachers) and reports the seconds
from its start to the end of its first step, and what that step compiled or loaded and how
long it took. Process start-up (imports) is counted in the first column only.
"""

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
from typing import Sequence

from benchmarks import common

_STARTED = time.perf_counter()
RESULTS_SECTION = "benchmarks.compile_time"


@dataclasses.dataclass(frozen=True)
class FirstStep:
  """What one process measured: seconds from start to the end of its first step, and that
  step's programs compiled and loaded and the seconds spent on them."""
  to_first_step_s: float
  compiled: int
  loaded: int
  compile_s: float


def measure_in_this_process(method: str, teacher: str, student: str, batch: int,
                            dataset: str, cache_dir: str) -> FirstStep:
  """Builds the step of (method, teacher → student) and runs it once, cache at `cache_dir`."""
  os.environ["JAXKD_COMPILATION_CACHE"] = cache_dir
  # pylint: disable=g-import-not-at-top
  from benchmarks import step as step_benchmark
  from jaxkd import compile_cache, data
  from jaxkd import step as step_lib
  compile_cache.enable()
  info = data.dataset_info(dataset)
  case = step_benchmark.StepCase(method, teacher, student, batch, dataset=dataset)
  mesh = step_lib.create_mesh()
  with tempfile.TemporaryDirectory(prefix="jaxkd_compile_time_") as root:
    teachers = step_benchmark.TeacherExports(root)
    checkpoint = teachers.path(teacher, info) if case.uses_teacher else ""
    train_step = step_benchmark.JaxTrainStep(step_benchmark.case_config(case, checkpoint), info,
                                             mesh)
    watch = compile_cache.CompileWatch()
    train_step.run(1)
  compiled, loaded, seconds = watch.counts()
  return FirstStep(time.perf_counter() - _STARTED, compiled, loaded, seconds)


def measure_in_new_process(method: str, teacher: str, student: str, batch: int, dataset: str,
                           cache_dir: str) -> FirstStep:
  command = [sys.executable, "-m", "benchmarks.compile_time", "--child", "--method", method,
             "--pair", f"{teacher}:{student}", "--batch", str(batch), "--dataset", dataset,
             "--cache-dir", cache_dir]
  output = subprocess.run(command, capture_output=True, text=True, check=False)
  if output.returncode:
    raise RuntimeError(f"{' '.join(command)} failed:\n{output.stderr[-3000:]}")
  return FirstStep(**json.loads(output.stdout.strip().splitlines()[-1]))


def cold_and_warm(method: str, teacher: str, student: str, batch: int,
                  dataset: str) -> tuple[FirstStep, FirstStep]:
  with tempfile.TemporaryDirectory(prefix="jaxkd_compile_cache_") as cache_dir:
    cold = measure_in_new_process(method, teacher, student, batch, dataset, cache_dir)
    warm = measure_in_new_process(method, teacher, student, batch, dataset, cache_dir)
  return cold, warm


def table_row(method: str, teacher: str, student: str, cold: FirstStep,
              warm: FirstStep) -> list[str]:
  pair = f"{teacher} → {student}" if method != "ce" else student
  return [method, pair, f"{cold.compile_s:.1f}", f"{cold.to_first_step_s:.1f}",
          f"{warm.compile_s:.1f}", f"{warm.to_first_step_s:.1f}",
          f"{warm.loaded} of {warm.loaded + warm.compiled}"]


HEADERS = ("method", "teacher → student", "cold: compile s", "cold: start to first step s",
           "warm: compile or load s", "warm: start to first step s",
           "warm: programs from the cache")


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
  parser = argparse.ArgumentParser(prog="python -m benchmarks.compile_time", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--method", default="atsc,simkd,kd,dkd")
  parser.add_argument("--pair", default="resnet56:resnet20,resnet32x4:resnet8x4",
                      help="TEACHER:STUDENT[,...]")
  parser.add_argument("--batch", type=int, default=64)
  parser.add_argument("--dataset", default="cifar100")
  parser.add_argument("--write-results", action="store_true",
                      help="write this harness's section of benchmarks/RESULTS.md")
  parser.add_argument("--results-path", default=common.RESULTS_PATH)
  parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
  parser.add_argument("--cache-dir", default="", help=argparse.SUPPRESS)
  return parser.parse_args(argv)


def main(argv: Sequence[str]) -> int:
  args = parse_args(argv)
  from benchmarks import step as step_benchmark  # pylint: disable=g-import-not-at-top
  pairs = step_benchmark.pairs(args.pair, "", "")
  methods = step_benchmark.method_names(args.method)
  if args.child:
    (teacher, student), = pairs
    print(json.dumps(dataclasses.asdict(measure_in_this_process(
        methods[0], teacher, student, args.batch, args.dataset, args.cache_dir))))
    return 0
  import jax  # pylint: disable=g-import-not-at-top
  from jaxkd import reporting  # pylint: disable=g-import-not-at-top
  hardware = reporting.hardware_description()
  rows = []
  for teacher, student in pairs:
    for method in methods:
      cold, warm = cold_and_warm(method, teacher, student, args.batch, args.dataset)
      rows.append(table_row(method, teacher, student, cold, warm))
      print(" | ".join(rows[-1]), flush=True)
  lines = common.markdown_table(HEADERS, rows)
  print("\n".join(lines))
  if args.write_results:
    description = common.run_description(
        common.command_line("benchmarks.compile_time", argv), hardware,
        [f"Batch {args.batch}, {args.dataset} shapes, float32; each row two fresh processes "
         "on one new compilation cache (cold, then warm)"])
    common.write_results_section(
        f"{RESULTS_SECTION}.{jax.default_backend()}",
        [f"## Compile time of the train step on {jax.default_backend()}", "",
                          *description, "", *lines], args.results_path)
  return 0


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))
