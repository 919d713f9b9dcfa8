"""`python -m benchmarks.study`: a multi-seed study of methods on one teacher/student pair.

    python -m benchmarks.study --suite digits_smoke --workdir /tmp/jaxkd/study --write-results
    python -m benchmarks.study --suite cifar100_r56_r20_full --workdir DIR --data_dir D \
        --shard 0/3                                        # on each of 3 machines: 0/3, 1/3, 2/3
    python -m benchmarks.study --suite cifar100_r56_r20_full --workdir DIR --data_dir D \
        --write-results --no-train                         # the table, from every run present

A suite (`benchmarks/suites/<name>.py`, see `benchmarks.study_suite`) names the teacher,
the student, the schedule, the methods and the seeds. Each (method, seed) run is a real
`jaxkd.train.train_and_evaluate` in DIR/<label>/seed_<seed>; a rerun skips the runs done and
resumes the interrupted ones. The teacher is imported (or trained) once into DIR/teacher.
`--estimate` times a few steps of each distinct method and prints each run's estimated wall
time (done first, automatically, for suites declared long). `--write-results` writes the
suite's section of benchmarks/STUDY.md and its plots in benchmarks/study/, merging the runs
of every shard present in DIR.
"""

import argparse
import os
import sys
import time

from benchmarks import (common, study_configs, study_estimate, study_plots, study_records,
                        study_report, study_results, study_runs, study_sources, study_suite)
from jaxkd import compile_cache, train


def parse_args(argv: list[str]) -> argparse.Namespace:
  parser = argparse.ArgumentParser(prog="python -m benchmarks.study",
                                   description=__doc__.splitlines()[0])
  parser.add_argument("--suite", required=True,
                      help=f"suite name: {', '.join(study_suite.suite_names())}")
  parser.add_argument("--workdir", required=True, help="directory of the study's runs")
  parser.add_argument("--data_dir", default="", help="TFDS data dir ('' = the TFDS default)")
  parser.add_argument("--seeds", help="comma-separated seeds (default: the suite's)")
  parser.add_argument("--methods", help="comma-separated method labels (default: all)")
  parser.add_argument("--shard", default="0/1", help="i/n: train every n-th run from the i-th")
  parser.add_argument("--replicas", type=int, default=1,
                      help="train up to this many seeds of a method together, as replicas of "
                           "one run (or of a pipeline's every stage) in one compiled step "
                           "(config.seeds)")
  parser.add_argument("--max_steps", type=int, help="stop every run after this many steps")
  parser.add_argument("--write-results", action="store_true",
                      help="write the suite's section of STUDY.md and its plots")
  parser.add_argument("--results-path", default=study_report.STUDY_PATH)
  parser.add_argument("--results-tag", default="",
                      help="write a section and plots of their own, study.<suite>.<tag> (e.g. "
                           "runs of other settings or hardware than the suite's main table)")
  parser.add_argument("--no-train", action="store_true",
                      help="train nothing: only write the results of the runs present")
  parser.add_argument("--records", default="",
                      help="a folder that keeps the finished runs' records (summary.json, "
                           "fingerprint.json): restored into the workdir where missing, saved "
                           "as each run finishes (commit it to keep a study across machines)")
  parser.add_argument("--estimate", action="store_true",
                      help="print each run's estimated wall time, then stop")
  parser.add_argument("--estimate-steps", type=int, default=study_estimate.PROBE_STEPS,
                      help="train steps timed per distinct method by the estimate")
  return parser.parse_args(argv)


def _seeds(text: str | None, suite: study_suite.Suite) -> tuple[int, ...]:
  if not text:
    return suite.seeds
  try:
    return tuple(int(seed) for seed in text.split(","))
  except ValueError:
    raise ValueError(f"--seeds '{text}' must be comma-separated integers, e.g. 0,1,2") from None


def write_results(suite: study_suite.Suite, workdir: str, settings: study_configs.RunSettings,
                  command: str, results_path: str, tag: str = "") -> list[str]:
  """Writes the suite's STUDY.md section and plots from every finished run in `workdir`
  (with `tag`, a section and plots of their own beside the suite's)."""
  name = f"{suite.name}.{tag}" if tag else suite.name
  results = study_results.gather(suite, workdir, settings)
  references = study_sources.references(suite, workdir, settings)
  plot_dir = os.path.join(os.path.dirname(os.path.abspath(results_path)), "study")
  os.makedirs(plot_dir, exist_ok=True)
  plots = []
  if results:
    plot = f"{name.replace('.', '_')}_accuracy.png"
    study_plots.accuracy_plot(results, references, f"{name}: test accuracy",
                              os.path.join(plot_dir, plot))
    plots.append(("test accuracy against epoch", f"study/{plot}"))
    plot = f"{name.replace('.', '_')}_teacher.png"
    if study_plots.teacher_plot(results, f"{name}: adapting teachers",
                                os.path.join(plot_dir, plot)):
      plots.append(("adapting teachers against epoch", f"study/{plot}"))
  total_wall_s = (sum(seed.wall_time_s for result in results for seed in result.seeds)
                  + study_results.teacher_training_seconds(suite, workdir))
  lines = study_report.section(suite, settings, command, references, results, total_wall_s,
                               plots, tag)
  study_report.write_section(name, lines, results_path)
  return lines


def run(args: argparse.Namespace, command: str) -> None:
  suite = study_suite.load_suite(args.suite)
  labels = (common.comma_list(args.methods, suite.labels, "--methods") if args.methods
            else suite.labels)
  settings = study_configs.RunSettings(args.data_dir, args.max_steps)
  workdir = os.path.abspath(args.workdir)
  runs = study_runs.shard_runs(study_runs.plan_runs(workdir, labels, _seeds(args.seeds, suite)),
                               *study_runs.parse_shard(args.shard))
  sources = study_sources.source_dirs(suite, workdir)

  def config_of(run_: study_runs.StudyRun):
    return study_configs.run_config(suite, suite.entry(run_.label), run_.seed,
                                    sources.teacher_dir, sources.student_start_dir, settings)

  started = time.time()
  if args.records:
    print(f"{study_records.restore(args.records, workdir)} record(s) restored from "
          f"{args.records}.", flush=True)
  if args.estimate or not args.no_train:
    study_sources.prepare_sources(suite, workdir, settings)
  done = [study_runs.run_is_done(r, config_of(r)) for r in runs]

  def save_records(finished: list[study_runs.StudyRun]) -> None:
    if args.records:
      study_records.save([r.workdir for r in finished], workdir, args.records)

  save_records([r for r, is_done in zip(runs, done) if is_done])
  estimates = None
  # A long suite's estimate times every pending method (about a minute each on a CPU): on its
  # first start only; a resumed suite's ETA comes from the runs it trains.
  if args.estimate or (suite.long and not args.no_train and not any(done)):
    pending = [r for r, is_done in zip(runs, done) if not is_done]
    estimates = study_estimate.estimate_runs(pending, config_of, sources.teacher_dir,
                                             args.estimate_steps)
    print("\n".join(study_estimate.estimate_lines(runs, estimates, done)), flush=True)
    if args.estimate:
      return
  if not args.no_train:
    for reference in study_sources.references(suite, workdir, settings):
      print(f"{reference.name}: test accuracy {100 * reference.accuracy:.2f}% "
            f"({reference.count} images, through jaxkd)", flush=True)
    study_runs.train_runs(runs, config_of, estimates, replicas=args.replicas,
                          on_finished=save_records)
    print(f"Shard done in {study_runs.format_duration(time.time() - started)}.", flush=True)
  if args.write_results:
    print("\n".join(write_results(suite, workdir, settings, command, args.results_path,
                                   args.results_tag)))


def main(argv: list[str]) -> int:
  args = parse_args(argv)
  compile_cache.enable()
  try:
    run(args, common.command_line("benchmarks.study", argv))
  except (ValueError, FileNotFoundError, FloatingPointError, train.TrainingInterrupted) as error:
    sys.exit(f"benchmarks.study: {error}")
  return 0


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))
