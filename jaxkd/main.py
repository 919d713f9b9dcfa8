"""Command line: `python -m jaxkd.main --config=configs/X.py --workdir=DIR [--config.a.b=v ...]`.

Parses flags, checks the whole run before anything trains (the config file, every override,
every stage's settings, the workdir and data_dir, the data set), joins the multi-process
runtime when launched on several hosts, and calls `jaxkd.train.train_and_evaluate`. A bad
input stops the run with one line on stderr, `jaxkd: <what to fix>`, and exit status 1.
Keras and Matplotlib (imported with TensorFlow) keep their settings files in the data_dir
(else the workdir), not in the home directory.
"""

import dataclasses
import importlib.machinery
import importlib.util
import os
import re
import sys
import tempfile

from absl import app, flags
import jax
import ml_collections
from ml_collections import config_flags

from jaxkd import (compile_cache, config_schema, config_validation, console, data, distributed,
                   pipeline, ranges, replicas, torch_checkpoint, workdir_lock)
from jaxkd.data import datasets, tfds_source

_OVERRIDE = re.compile(r"^--?(?:no)?config\.([^=]+)")
_CONFIG_ARGUMENT = re.compile(r"^--?config(?:=(.*))?$")
_MISSING_FLAG = re.compile(r"Flag --(\w+) must have a value other than None")
_MISSING_ADVICE = {
    "config": "give --config=configs/<name>.py (e.g. configs/quickstart.py)",
    "workdir": "give --workdir=DIR, where the run writes checkpoints, metrics and summary.json",
}


class InputError(ValueError):
  """A bad command line, config file or directory; the message says what to fix, in one line."""


@dataclasses.dataclass(frozen=True)
class Flags:
  """The flags of `jaxkd.main`, as defined on one `flags.FlagValues`."""
  config: flags.FlagHolder
  workdir: flags.FlagHolder
  coordinator_address: flags.FlagHolder
  num_processes: flags.FlagHolder
  process_id: flags.FlagHolder


def define_flags(flag_values: flags.FlagValues, argv: list[str] | None = None) -> Flags:
  """Defines the flags on `flag_values`; config overrides are read from `argv` (None: sys.argv)."""
  defined = Flags(
      config=config_flags.DEFINE_config_file(
          "config", None, "Path to a config file (configs/*.py); fields are overridden with "
          "--config.field=value.", flag_values=flag_values, lock_config=True, sys_argv=argv),
      workdir=flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics and "
                                  "summary.json; a run resumes from it.", flag_values=flag_values),
      coordinator_address=flags.DEFINE_string(
          "coordinator_address", None, "host:port of process 0, for multi-process runs "
          "outside SLURM and Cloud TPU.", flag_values=flag_values),
      num_processes=flags.DEFINE_integer("num_processes", None, "Number of processes.",
                                         flag_values=flag_values),
      process_id=flags.DEFINE_integer("process_id", None, "This process's index.",
                                      flag_values=flag_values))
  flags.mark_flags_as_required(["config", "workdir"], flag_values=flag_values)
  return defined


_FLAGS = define_flags(flags.FLAGS)


def _describe(error: BaseException) -> str:
  """'Type: message' of an exception, on one line."""
  return " ".join(f"{type(error).__name__}: {error}".split())


def load_config_file(spec: str) -> ml_collections.ConfigDict:
  """`get_config()` of the config file `spec` ('path.py' or 'path.py:argument').

  Raises InputError when the file is missing, does not compile or import, has no
  `get_config`, or its `get_config` fails or returns no ConfigDict.
  """
  path, *arguments = spec.split(":", 1)
  if not os.path.isfile(path):
    problem = "is not a file" if os.path.exists(path) else "does not exist"
    raise InputError(f"config file {path} {problem}: give --config=configs/<name>.py "
                     "(e.g. configs/quickstart.py)")
  loader = importlib.machinery.SourceFileLoader("jaxkd_config_file", path)
  module = importlib.util.module_from_spec(importlib.util.spec_from_loader(loader.name, loader))
  try:
    loader.exec_module(module)
  except SyntaxError as error:
    raise InputError(f"config file {path} line {error.lineno}: {error.msg}: fix its "
                     "syntax") from error
  except Exception as error:  # pylint: disable=broad-except
    raise InputError(f"config file {path} fails to import ({_describe(error)}): fix the "
                     "file") from error
  if not callable(getattr(module, "get_config", None)):
    raise InputError(f"config file {path} defines no get_config(): define one that returns "
                     "the run's ConfigDict, as configs/quickstart.py does")
  try:
    config = module.get_config(*arguments)
  except Exception as error:  # pylint: disable=broad-except
    raise InputError(f"get_config() of config file {path} fails ({_describe(error)}): fix "
                     "the file") from error
  if not isinstance(config, ml_collections.ConfigDict):
    raise InputError(f"get_config() of config file {path} returns a {type(config).__name__}: "
                     "return a ConfigDict (jaxkd.config_schema.base_config())")
  return config


def _unknown_field(section: ml_collections.ConfigDict, path: str, key: str) -> str:
  """What to do instead of overriding `path.key`, which `section` (at `path`) lacks."""
  if path == "config" and config_schema.is_pipeline(section) and any(
      key in section.stages[name] for name in section.stage_order):
    return (f"this pipeline config sets {key} per stage: give --config.stages.<stage>.{key} "
            f"(stages: {', '.join(section.stage_order)})")
  close = ranges.closest_name(key, section)
  hint = f"did you mean --{path}.{close}?" if close else f"valid: {', '.join(sorted(section))}"
  return f"{path} has no field '{key}'; {hint}"


def check_overrides(config: ml_collections.ConfigDict, argv: list[str]) -> None:
  """Raises InputError for the first `--config.a.b=v` in `argv` naming no field of `config`."""
  for argument in argv[1:]:
    match = _OVERRIDE.match(argument)
    if not match:
      continue
    node, path = config, "config"
    for key in match.group(1).split("."):
      if not isinstance(node, ml_collections.ConfigDict):
        raise InputError(f"--{path}.{key}: {path} is a {type(node).__name__}, not a "
                         f"section: set --{path}=VALUE")
      if key not in node:
        raise InputError(f"--{path}.{key}: {_unknown_field(node, path, key)}")
      node, path = node[key], f"{path}.{key}"


def _config_argument(argv: list[str]) -> str | None:
  """The value of the last --config flag in `argv`, or None."""
  value = None
  for index, argument in enumerate(argv[1:], start=1):
    match = _CONFIG_ARGUMENT.match(argument)
    if match:
      value = match.group(1) if match.group(1) is not None else (
          argv[index + 1] if index + 1 < len(argv) else None)
  return value


def _flag_error(error: Exception) -> str:
  """One line for a flag-parsing error."""
  message = " ".join(str(error).split())
  missing = _MISSING_FLAG.search(message)
  if missing and missing.group(1) in _MISSING_ADVICE:
    return f"--{missing.group(1)} is missing: {_MISSING_ADVICE[missing.group(1)]}"
  if isinstance(error, flags.Error):
    return f"{message} (--helpfull lists the flags)"
  return f"bad command line ({_describe(error)})"


def _state_dict_fields(config: ml_collections.ConfigDict) -> list[tuple[str, str]]:
  """(flag, path) of each PyTorch file that `config` (and each stage of a pipeline) names as a
  teacher or a student's start; paths with a `{seed}` placeholder are left out."""
  sections = [("config", config)] + [(f"config.stages.{name}", config.stages[name])
                                     for name in config.get("stage_order", ())]
  return [(f"--{prefix}.{field}", path)
          for prefix, section in sections
          for field in ("teacher_checkpoint", "student_checkpoint")
          for path in config_schema.split_names(section.get(field, ""))
          if torch_checkpoint.is_torch_checkpoint(path)
          and replicas.SEED_PLACEHOLDER not in path]


def check_state_dict_files(config: ml_collections.ConfigDict) -> None:
  """Raises InputError unless each PyTorch file the run loads exists, is a readable file and
  starts as its format does: checked at once, not after the imports of training (~20 s)."""
  for flag, path in _state_dict_fields(config):
    try:
      torch_checkpoint.check_state_dict_file(path)
    except (ValueError, FileNotFoundError) as error:
      raise InputError(f"{flag}: {error}") from None


def parse_command_line(argv: list[str], flag_values: flags.FlagValues = flags.FLAGS
                       ) -> list[str]:
  """Parses `argv` into `flag_values`; raises InputError with a one-line fix.

  The config file and the overrides are checked before ml_collections loads them, so that
  its errors (a traceback of the config file, a 'did you mean' deep in an AttributeError)
  become one line; then the PyTorch files the config names (`check_state_dict_files`).
  """
  spec = _config_argument(argv)
  if spec:
    check_overrides(load_config_file(spec), argv)
  try:
    remaining = flag_values(argv)
  except Exception as error:  # pylint: disable=broad-except
    raise InputError(_flag_error(error)) from error
  if len(remaining) > 1:
    raise InputError(f"unexpected argument(s) {' '.join(remaining[1:])}: give settings as "
                     "--flag=value (--helpfull lists the flags)")
  check_state_dict_files(flag_values["config"].value)
  return remaining


def _parse_flags(argv: list[str]) -> list[str]:
  """`app.run`'s flags parser: a bad command line exits with one line."""
  try:
    return parse_command_line(argv)
  except InputError as error:
    sys.exit(f"jaxkd: {error}")


def check_directory(path: str, flag: str) -> None:
  """Makes directory `path` if needed; InputError unless this process can write in it."""
  if os.path.exists(path) and not os.path.isdir(path):
    raise InputError(f"{flag}={path} is a file: give a directory")
  try:
    os.makedirs(path, exist_ok=True)
    with tempfile.TemporaryFile(dir=path):
      pass
  except OSError as error:
    raise InputError(f"{flag}={path} cannot be written ({error.strerror}): give a directory "
                     "you can write to") from error


def check_run(config: ml_collections.ConfigDict, workdir: str) -> None:
  """Everything a run can be refused for, before any stage trains.

  Every stage's settings, the workdir and data_dir (made if needed), and the data set of
  every stage (prepared here when it can be: `tfds_source.prepared_builder`). Raises
  ValueError or `data.MissingDatasetError` with a one-line fix.
  """
  if config_schema.is_pipeline(config):
    runs = list(pipeline.validated_stages(config, workdir).values())
  else:
    config_validation.validate(config)
    runs = [config]
  check_directory(workdir, "--workdir")
  for data_dir in sorted({run.data_dir for run in runs if run.data_dir}):
    check_directory(data_dir, "--config.data_dir")
  for dataset, data_dir in sorted({(run.dataset, run.data_dir) for run in runs}):
    tfds_source.prepared_builder(datasets.dataset_source(dataset), data_dir)


def command_line_error(argv: list[str]) -> str:
  """The `jaxkd: ...` line `python -m jaxkd.main argv[1:]` stops with before training, or ''.

  The in-process twin of the command line (for tests): fresh flag values, the same checks,
  without the multi-process runtime; it may make the workdir and prepare the data set.
  """
  flag_values = flags.FlagValues()
  defined = define_flags(flag_values, argv)
  try:
    parse_command_line(argv, flag_values)
    check_run(defined.config.value, defined.workdir.value)
  except (ValueError, data.MissingDatasetError) as error:
    return f"jaxkd: {error}"
  return ""


def keep_tool_files_in(directory: str) -> None:
  """Keras and Matplotlib write their settings under `directory` instead of ~/.keras, ~/.cache
  and ~/.config (unless KERAS_HOME or MPLCONFIGDIR are set); call before TensorFlow imports."""
  os.environ.setdefault("KERAS_HOME", os.path.join(directory, ".keras"))
  os.environ.setdefault("MPLCONFIGDIR", os.path.join(directory, ".matplotlib"))


def main(argv: list[str]) -> None:
  del argv  # Checked by the flags parser.
  config, workdir = _FLAGS.config.value, _FLAGS.workdir.value
  keep_tool_files_in(config.data_dir or workdir)
  console.quiet_native_logs()
  console.show_own_lines_only(flags.FLAGS.verbosity)
  distributed.initialize(_FLAGS.coordinator_address.value, _FLAGS.num_processes.value,
                         _FLAGS.process_id.value)
  compile_cache.enable()
  from jaxkd import train  # After distributed start-up, which must precede any JAX computation.
  try:
    check_run(config, workdir)
    with workdir_lock.hold(workdir, jax.process_index()):
      summary = train.train_and_evaluate(config, workdir)
  except (ValueError, FileNotFoundError, FloatingPointError, data.MissingDatasetError,
          train.TrainingInterrupted) as error:
    sys.exit(f"jaxkd: {error}")
  print(results_table(summary))
  statistics = seed_statistics_table(summary)
  if statistics:
    print(f"\n{statistics}")


def _single_runs(summary: dict) -> dict[str, dict]:
  """`{name: summary}` of the single runs under a pipeline's or a replicated run's summary,
  each named by its directory under the workdir ('seed_1/student' for seed 1 of a pipeline's
  stage 'student'); {} for a single run's."""
  parts = summary.get("stages") or summary.get("replicas")
  if not parts:
    return {}
  runs = {}
  for name, part in parts.items():
    replicas_of_stage = _single_runs(part)
    runs.update({f"{replica}/{name}": run for replica, run in replicas_of_stage.items()}
                or {name: part})
  return runs


def seed_statistics_table(summary: dict) -> str:
  """Mean ± sample standard deviation of the final test accuracy over seeds: one line per
  setting of a sweep, or one for all the replicas (of the last stage, for a pipeline);
  '' for a single run."""
  groups = summary.get("settings") or (
      {"all seeds": summary} if "final_test_accuracy_count" in summary else {})
  if not groups:
    return ""
  width = max(10, *(len(name) for name in groups))
  lines = [f"{'setting':{width}s} {'seeds':>5s} {'test acc (mean ± std)':>22s}"]
  for name, group in groups.items():
    mean, std = group["final_test_accuracy_mean"], group["final_test_accuracy_std"]
    text = "—" if mean is None else f"{mean:.4f}" + ("" if std is None else f" ± {std:.4f}")
    lines.append(f"{name:{width}s} {group['final_test_accuracy_count']:5d} {text:>22s}")
  return "\n".join(lines)


def results_table(summary: dict) -> str:
  """One line per run (per stage of a pipeline): what was trained and how well.

  `test acc` is the test accuracy at the last step; `test@best` the test accuracy at the step
  that scored best on the split named under `chosen by` (validation when the run holds one out).
  """
  runs = _single_runs(summary) or {"run": summary}
  heading = "stage" if "stages" in summary else "run"
  width = max(10, *(len(name) for name in runs))
  lines = [f"{heading:{width}s} {'method':18s} {'model':12s} {'test acc':>9s} {'test@best':>9s} "
           f"{'chosen by':>10s} {'steps':>7s} {'wall s':>7s}"]
  for name, run in runs.items():
    final, at_best = run["final_test_accuracy"], run["test_accuracy_at_best"]
    lines.append(f"{name:{width}s} {run['method']:18s} {run.get('student_model', ''):12s} "
                 f"{final if final is None else f'{final:.4f}':>9} "
                 f"{at_best if at_best is None else f'{at_best:.4f}':>9} "
                 f"{run['best_selected_by']:>10s} {run['steps']:7d} {run['wall_time_s']:7.1f}")
  return "\n".join(lines)


if __name__ == "__main__":
  app.run(main, flags_parser=_parse_flags)
