"""A short real run of every method on the offline CIFAR-10 JPEGs: same teacher, same student, same steps.

    python -m benchmarks.methods --teacher resnet20 --student resnet8 \
        --teacher-steps 300 --steps 200 --workdir /tmp/jaxkd/methods --write-results

Trains the teacher once with CE (and, for Generous Teacher, a generous teacher from it
for as many steps), then each method's student from it, each through
`jaxkd.train.train_and_evaluate` with its config's recipe; reports test accuracy after
the given steps and training images/s. A comparison of methods at equal cost on this
machine, not a reproduction of any paper's numbers (those need the full recipe).
"""

import argparse
import os
import sys
import time

from jaxkd import methods, recipes, reporting, train

from benchmarks import common

DISTILLERS = ("kd", "dkd", "ka", "dtd", "lskd", "student_friendly", "simkd", "atsc")


def run_config(method: str, model: str, args: argparse.Namespace, steps: int):
  config = recipes.cifar_run(method, model, "cifar10_jpeg")
  config.batch_size, config.eval_batch_size = args.batch, 500
  config.max_steps = steps
  config.log_every_steps = 50
  if method == "dkd":  # A short run: the 20-epoch warm-up of the full recipe would never end.
    config.dkd.warmup_epochs = 1
  if method == "atsc":
    methods.atsc.share_student_optimizer(config)
  return config


def train_once(config, workdir: str) -> dict:
  existing = reporting.read_summary(workdir)
  if existing and existing["steps"] >= config.max_steps:
    return existing
  return train.train_and_evaluate(config, workdir)


def main(argv: list[str]) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--teacher", default="resnet20")
  parser.add_argument("--student", default="resnet8")
  parser.add_argument("--teacher-steps", type=int, default=300)
  parser.add_argument("--steps", type=int, default=200)
  parser.add_argument("--batch", type=int, default=64)
  parser.add_argument("--methods", default="ce," + ",".join(DISTILLERS) + ",generous")
  parser.add_argument("--workdir", default="/tmp/jaxkd/methods")
  parser.add_argument("--write-results", action="store_true")
  parser.add_argument("--results-path", default=common.RESULTS_PATH)
  args = parser.parse_args(argv)
  started = time.time()
  teacher_dir = os.path.join(args.workdir, "teacher")
  teacher = train_once(run_config("ce", args.teacher, args, args.teacher_steps), teacher_dir)
  rows = []
  for name in args.methods.split(","):
    if name == "ce":
      config = run_config("ce", args.student, args, args.steps)
    elif name == "generous":
      generous = run_config("generous", args.teacher, args, args.teacher_steps)
      generous.teacher_model, generous.teacher_checkpoint = args.teacher, teacher_dir
      generous_dir = os.path.join(args.workdir, "generous_teacher")
      gt = train_once(generous, generous_dir)
      config = run_config("kd", args.student, args, args.steps)
      config.teacher_model, config.teacher_checkpoint = args.teacher, generous_dir
      name = f"generous ▶ kd (GT {gt['final_test_accuracy']:.4f})"
    else:
      config = run_config(name, args.student, args, args.steps)
      config.teacher_model, config.teacher_checkpoint = args.teacher, teacher_dir
    summary = train_once(config, os.path.join(args.workdir, name.split(" ")[0]))
    rows.append((name, summary))
    print(f"{name:32s} accuracy {summary['final_test_accuracy']:.4f}  "
          f"{summary['images_per_s']:.1f} images/s", flush=True)
  lines = [
      f"## Methods: a short run each on cifar10_jpeg ({time.strftime('%Y-%m-%d')})", "",
      f"Hardware: {reporting.hardware_description()}. Teacher {args.teacher} (CE, "
      f"{args.teacher_steps} steps, test accuracy {teacher['final_test_accuracy']:.4f}); "
      f"student {args.student}, {args.steps} steps of batch {args.batch}, each method's CIFAR "
      "recipe (DKD warm-up 1 epoch). Accuracy on the 10,000 test images.", "",
      "Command: `python -m benchmarks.methods " + " ".join(argv) + "`", "",
      "| method | test accuracy | train images/s | wall s |", "|---|---|---|---|"]
  lines += [f"| {name} | {s['final_test_accuracy']:.4f} | {s['images_per_s']:.1f} | "
            f"{s['wall_time_s']:.0f} |" for name, s in rows]
  lines.append(f"\nTotal wall time {time.time() - started:.0f} s.")
  if args.write_results:
    common.write_results_section("methods", lines, args.results_path)
  print("\n".join(lines))
  return 0


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))
