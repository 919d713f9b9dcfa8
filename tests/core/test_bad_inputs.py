"""Bad inputs stop a run before anything trains, with one line that says what to fix.

Command lines run in process through `jaxkd.main.command_line_error` (the same parsing and
checks as `python -m jaxkd.main`); a few run as real subprocesses (slow) to check the exit
status, the absence of tracebacks and that a run writes nothing outside its workdir and
data_dir.
"""

import os
import re
import subprocess
import sys

from absl import flags
import pytest

from jaxkd import config_validation, methods, optim, recipes
from jaxkd import main as cli
from jaxkd.ranges import Range

REPO = os.path.join(os.path.dirname(__file__), "..", "..")
QUICKSTART = os.path.join(REPO, "configs", "quickstart.py")
DKD = os.path.join(REPO, "configs", "dkd_cifar100.py")
DEFAULT = os.path.join(REPO, "configs", "default.py")
KD_RUN = ("--config.method=kd", "--config.teacher_model=resnet32x4",
          "--config.teacher_checkpoint=/t")
BROKEN_CONFIGS = {
    "syntax.py": "def get_config(:\n  pass\n",
    "no_get_config.py": "CONFIG = None\n",
    "raises.py": "def get_config():\n  return 1 / 0\n",
    "returns_int.py": "def get_config():\n  return 1\n",
}


@pytest.fixture(name="files")
def fixture_files(tmp_path):
  """Paths of the bad config files, a plain file, an empty manual dir and broken state_dict
  files, under tmp_path."""
  for name, text in BROKEN_CONFIGS.items():
    (tmp_path / name).write_text(text)
  (tmp_path / "a_file").write_text("")
  (tmp_path / "manual").mkdir()
  (tmp_path / "junk.pth").write_bytes(b"\x00not a torch file")
  (tmp_path / "cut.pth").write_bytes(b"PK\x03\x04" + bytes(64))  # A zip's start, no end.
  (tmp_path / "folder.pth").mkdir()
  (tmp_path / "junk.npz").write_bytes(b"\x00not an npz")
  return tmp_path


# (id, argv after the program name with {tmp} for the test's folder, what the line must say)
COMMAND_LINES = [
    ("typo", ["--config=" + QUICKSTART, "--config.batchsize=64"],
     "config has no field 'batchsize'; did you mean --config.batch_size?"),
    ("method_on_pipeline", ["--config=" + QUICKSTART, "--config.method=kd"],
     "give --config.stages.<stage>.method (stages: teacher, student)"),
    ("unknown_method_setting", ["--config=" + QUICKSTART,
                                "--config.stages.student.kd.temprature=2"],
     "did you mean --config.stages.student.kd.temperature?"),
    ("other_method_section", ["--config=" + QUICKSTART, "--config.stages.student.dkd.beta=2"],
     "config.stages.student has no field 'dkd'"),
    ("unknown_stage", ["--config=" + QUICKSTART, "--config.stages.studnt.seed=1"],
     "did you mean --config.stages.student?"),
    ("field_as_section", ["--config=" + QUICKSTART, "--config.seed.x=1"],
     "config.seed is a int, not a section"),
    ("bad_value", ["--config=" + QUICKSTART, "--config.batch_size=abc"],
     "flag --config.batch_size=abc: invalid literal"),
    ("missing_config_file", ["--config={tmp}/nope.py"], "config file {tmp}/nope.py does not exist"),
    ("config_is_a_folder", ["--config={tmp}"], "config file {tmp} is not a file"),
    ("syntax_error", ["--config={tmp}/syntax.py"], "syntax.py line 1: invalid syntax: fix its"),
    ("no_get_config", ["--config={tmp}/no_get_config.py"], "defines no get_config()"),
    ("get_config_raises", ["--config={tmp}/raises.py"], "fails (ZeroDivisionError"),
    ("get_config_returns_int", ["--config={tmp}/returns_int.py"], "returns a int: return a"),
    ("no_workdir", ["--config=" + QUICKSTART, None], "--workdir is missing: give --workdir=DIR"),
    ("no_config", [], "--config is missing: give --config=configs/"),
    ("unknown_flag", ["--config=" + QUICKSTART, "--workdirr=/x"], "Did you mean: workdir"),
    ("positional_argument", ["--config=" + QUICKSTART, "extra"], "unexpected argument(s) extra"),
    ("dkd_beta_negative", ["--config=" + DKD, "--config.stages.student.dkd.beta=-8"],
     "stage 'student': config.dkd.beta must be ≥ 0, got -8.0"),
    ("kd_temperature_zero", ["--config=" + QUICKSTART,
                             "--config.stages.student.kd.temperature=0"],
     "config.kd.temperature must be > 0, got 0.0"),
    ("negative_learning_rate", ["--config=" + DEFAULT, "--config.optimizer.learning_rate=-0.1"],
     "config.optimizer.learning_rate must be ≥ 0, got -0.1"),
    ("negative_weight_decay", ["--config=" + DEFAULT,
                               "--config.teacher_optimizer.weight_decay=-1e-4"],
     "config.teacher_optimizer.weight_decay must be ≥ 0, got -0.0001"),
    ("negative_checkpoint_every", ["--config=" + DEFAULT, "--config.checkpoint_every_steps=-5"],
     "config.checkpoint_every_steps must be ≥ 0, got -5"),
    ("unknown_schedule", ["--config=" + DEFAULT, "--config.optimizer.schedule=linear"],
     "config.optimizer.schedule must be one of step, cosine, constant, got 'linear'"),
    ("nan_temperature", ["--config=" + QUICKSTART, "--config.stages.student.kd.temperature=nan"],
     "stage 'student': config.kd.temperature must be a finite number > 0, got nan"),
    ("infinite_learning_rate", ["--config=" + DEFAULT, "--config.optimizer.learning_rate=inf"],
     "config.optimizer.learning_rate must be a finite number ≥ 0, got inf"),
    ("nan_teacher_learning_rate", ["--config=" + DEFAULT,
                                   "--config.teacher_optimizer.learning_rate=nan"],
     "config.teacher_optimizer.learning_rate must be a finite number ≥ 0, got nan"),
    ("nan_in_a_sweep", ["--config=" + DEFAULT, *KD_RUN, "--config.sweep=kd.temperature=4,nan"],
     "config.kd.temperature must be a finite number > 0, got nan"),
    ("method_typo", ["--config=" + DEFAULT, "--config.method=kdd"], "did you mean 'kd'?"),
    ("model_typo", ["--config=" + DEFAULT, "--config.student_model=resnet8x"],
     "did you mean 'resnet8x4'?"),
    ("dataset_typo", ["--config=" + DEFAULT, "--config.dataset=cifar1000"],
     "did you mean 'cifar100'?"),
    ("schedule_typo", ["--config=" + DEFAULT, "--config.optimizer.schedule=cosin"],
     "got 'cosin'; did you mean 'cosine'?"),
    ("conv_impl_typo", ["--config=" + DEFAULT, "--config.conv_impl=xl"],
     "config.conv_impl must be one of auto, xla, cpu, per_replica, got 'xl'; did you mean 'xla'?"),
    ("sweep_setting_typo", ["--config=" + DEFAULT, *KD_RUN, "--config.sweep=kd.temprature=2,4"],
     "kd.temprature is not a setting of method 'kd'; it can sweep temperature, "),
    ("sweep_method_typo", ["--config=" + DEFAULT, *KD_RUN, "--config.sweep=kdd.temperature=2,4"],
     "got 'kdd.temperature=2,4'; did you mean 'kd'?"),
    ("restart_stage_typo", ["--config=" + QUICKSTART, "--config.restart_stages=studnet"],
     "restart_stages names unknown stage(s) ['studnet']; stages: teacher, student; did you "
     "mean 'student'?"),
    ("restart_run_typo", ["--config=" + DEFAULT, "--config.restart_stages=runn"],
     "a single run takes 'run' (retrain here when the config changed) or ''; did you mean "
     "'run'?"),
    ("stage_reference_typo", ["--config=" + QUICKSTART,
                              "--config.stages.student.teacher_checkpoint=@teachr"],
     "unknown stage(s) ['teachr']; stages: teacher, student; did you mean 'teacher'?"),
    ("workdir_is_a_file", ["--config=" + QUICKSTART, "--workdir={tmp}/a_file"],
     "--workdir={tmp}/a_file is a file: give a directory"),
    ("workdir_under_a_file", ["--config=" + QUICKSTART, "--workdir={tmp}/a_file/run"],
     "--workdir={tmp}/a_file/run cannot be written (Not a directory)"),
    ("workdir_unwritable", ["--config=" + QUICKSTART, "--workdir=/proc/jaxkd_run"],
     "--workdir=/proc/jaxkd_run cannot be written"),
    ("data_dir_is_a_file", ["--config=" + QUICKSTART, "--config.data_dir={tmp}/a_file"],
     "--config.data_dir={tmp}/a_file is a file: give a directory"),
    ("data_dir_unwritable", ["--config=" + QUICKSTART, "--config.data_dir=/proc/jaxkd_data"],
     "--config.data_dir=/proc/jaxkd_data cannot be written"),
    ("dataset_not_prepared", ["--config=" + QUICKSTART, "--config.dataset=fashion_mnist",
                              "--config.data_dir={tmp}/data"],
     "data set 'fashion_mnist' is not prepared in data_dir {tmp}/data: run `tfds build"),
    ("teacher_file_missing", ["--config=" + QUICKSTART,
                              "--config.teacher_checkpoint={tmp}/absent.pth"],
     "--config.teacher_checkpoint: no state_dict file at '{tmp}/absent.pth'"),
    ("teacher_file_junk", ["--config=" + QUICKSTART, "--config.teacher_checkpoint={tmp}/junk.pth"],
     "--config.teacher_checkpoint: '{tmp}/junk.pth' is not a PyTorch file"),
    ("teacher_file_truncated", ["--config=" + QUICKSTART,
                                "--config.teacher_checkpoint={tmp}/cut.pth"],
     "'{tmp}/cut.pth' is truncated (a zip archive without its closing directory)"),
    ("teacher_file_is_a_folder", ["--config=" + QUICKSTART,
                                  "--config.teacher_checkpoint={tmp}/folder.pth"],
     "'{tmp}/folder.pth' is a directory, not a state_dict file"),
    ("student_file_junk", ["--config=" + QUICKSTART,
                           "--config.stages.student.student_checkpoint={tmp}/junk.npz"],
     "--config.stages.student.student_checkpoint: '{tmp}/junk.npz' is not a numpy .npz file"),
    ("cifar10_jpeg_without_archive", ["--config=" + QUICKSTART, "--config.dataset=cifar10_jpeg",
                                      "--config.data_dir={tmp}/data"],
     "manual/cifar10_jpeg.tar.gz does not exist: put cifar10_jpeg.tar.gz in"),
]


def command_line(arguments, tmp):
  """argv of `python -m jaxkd.main`: `arguments` ({tmp} filled in) and a workdir unless given.

  A None entry stands for a missing --workdir.
  """
  argv = ["jaxkd.main"] + [a.format(tmp=tmp) for a in arguments if a is not None]
  if None not in arguments and arguments and not any(a.startswith("--workdir")
                                                       for a in argv):
    argv.append(f"--workdir={tmp}/work")
  return argv


@pytest.mark.parametrize("arguments, expected", [case[1:] for case in COMMAND_LINES],
                         ids=[case[0] for case in COMMAND_LINES])
def test_bad_command_line_gives_one_line_naming_the_fix(arguments, expected, files, monkeypatch):
  monkeypatch.setenv("JAXKD_MANUAL_DIR", str(files / "manual"))
  line = cli.command_line_error(command_line(arguments, files))
  assert line.startswith("jaxkd: ") and "\n" not in line
  assert expected.format(tmp=files) in line


def test_state_dict_files_are_checked_while_the_flags_are_parsed(files):
  """Before `main` runs, hence before the imports of training (~20 s)."""
  argv = command_line(["--config=" + QUICKSTART, f"--config.teacher_checkpoint={files}/junk.pth"],
                      files)
  flag_values = flags.FlagValues()
  cli.define_flags(flag_values, argv)
  with pytest.raises(cli.InputError, match="is not a PyTorch file"):
    cli.parse_command_line(argv, flag_values)


def test_a_good_command_line_passes_the_checks(files):
  data_dir = files / "data"
  argv = command_line(["--config=" + QUICKSTART, f"--config.data_dir={data_dir}"], files)
  assert cli.command_line_error(argv) == ""
  assert os.path.isdir(files / "work")


def outside(valid: Range):
  """A value just outside `valid`."""
  if valid.low is not None:
    return valid.low if valid.low_open else valid.low - 1
  return valid.high if valid.high_open else valid.high + 1


def method_cases():
  for name in methods.METHODS.names():
    for field, valid in methods.METHODS.get(name).ranges().items():
      yield name, field, valid


@pytest.mark.parametrize("name", methods.METHODS.names())
def test_every_numeric_method_setting_has_a_range_holding_its_default(name):
  method = methods.METHODS.get(name)
  numeric = {k for k, v in method.default_config().items()
             if isinstance(v, (int, float)) and not isinstance(v, bool)}
  assert set(method.ranges()) == numeric
  for field, valid in method.ranges().items():
    assert method.default_config()[field] in valid, field


def method_config(name):
  config = recipes.cifar_run(name, "cnn_small", "digits")
  config.teacher_model, config.teacher_checkpoint = "cnn_large", "/t"
  return config


@pytest.mark.parametrize("name, field, valid", list(method_cases()),
                         ids=[f"{n}.{f}" for n, f, _ in method_cases()])
def test_method_setting_out_of_range_is_refused(name, field, valid):
  config = method_config(name)
  default = methods.METHODS.get(name).default_config()[field]
  config[name] = {field: type(default)(outside(valid))}
  with pytest.raises(ValueError, match=rf"^config\.{name}\.{field} must be "
                                       rf"{re.escape(str(valid))}, got \S+$"):
    config_validation.validate(config)


def float_setting_cases():
  for name, field, _ in method_cases():
    if isinstance(methods.METHODS.get(name).default_config()[field], float):
      yield name, field


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
@pytest.mark.parametrize("name, field", list(float_setting_cases()),
                         ids=[f"{n}.{f}" for n, f in float_setting_cases()])
def test_non_finite_method_setting_is_refused(name, field, value):
  config = method_config(name)
  config[name] = {field: value}
  with pytest.raises(ValueError, match=rf"^config\.{name}\.{field} must be a finite number"):
    config_validation.validate(config)


@pytest.mark.parametrize("field, valid", config_validation.FIELD_RANGES.items(),
                         ids=list(config_validation.FIELD_RANGES))
def test_run_field_out_of_range_is_refused(field, valid):
  config = method_config("ce")
  config[field] = int(outside(valid))
  with pytest.raises(ValueError, match=rf"^config\.{field} must be .*, got -?\d+$"):
    config_validation.validate(config)


@pytest.mark.parametrize("field, value, message", [
    ("learning_rate", -0.1, "learning_rate must be ≥ 0, got -0.1"),
    ("weight_decay", -1e-4, "weight_decay must be ≥ 0, got -0.0001"),
    ("momentum", 1.0, r"momentum must be in \[0, 1\), got 1.0"),
    ("decay_factor", 0.0, r"decay_factor must be in \(0, 1\], got 0.0"),
    ("decay_epochs", (0, 5), r"decay_epochs must be > 0, got \(0, 5\)"),
    ("warmup_epochs", 300, r"warmup_epochs must be in \[0, 240\], got 300"),
    ("schedule", "linear", "schedule must be one of step, cosine, constant, got 'linear'"),
    ("name", "adam", "name must be one of sgd, adamw, got 'adam'"),
    ("learning_rate", float("nan"), "learning_rate must be a finite number ≥ 0, got nan"),
    ("momentum", float("nan"), r"momentum must be a finite number in \[0, 1\), got nan"),
    ("decay_factor", float("inf"), r"decay_factor must be a finite number in \(0, 1\]"),
    ("weight_decay", float("inf"), "weight_decay must be a finite number ≥ 0, got inf"),
])
@pytest.mark.parametrize("section", ["optimizer", "teacher_optimizer"])
def test_optimizer_setting_out_of_range_is_refused(section, field, value, message):
  config = method_config("ce")
  config[section][field] = value
  with pytest.raises(ValueError, match=f"^config.{section}.{message}"):
    config_validation.validate(config)


def test_zero_learning_rate_is_allowed_and_late_decay_only_warns():
  config = method_config("ce")
  config.optimizer.learning_rate, config.num_epochs = 0.0, 3
  config_validation.validate(config)
  assert optim.optimizer_ranges(3)["warmup_epochs"] == Range(0, 3)


def test_float_for_an_integer_method_setting_is_refused():
  config = method_config("simkd")
  config.simkd = {"factor": 2.5}
  with pytest.raises(ValueError, match="config.simkd.factor must be a int, got 2.5"):
    config_validation.validate(config)


def run_main(*arguments, env=None, timeout=300):
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2", **(env or {}))
  return subprocess.run([sys.executable, "-m", "jaxkd.main", *arguments], cwd=REPO, env=env,
                        capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
@pytest.mark.parametrize("arguments, expected", [
    (["--config=configs/quickstart.py", "--config.batchsize=64"], "did you mean"),
    (["--config={tmp}/syntax.py"], "line 1: invalid syntax"),
    (["--config=configs/dkd_cifar100.py", "--config.stages.student.dkd.beta=-8"],
     "config.dkd.beta must be ≥ 0, got -8.0"),
    (["--config=configs/quickstart.py", "--config.dataset=fashion_mnist",
      "--config.data_dir={tmp}/data"], "data set 'fashion_mnist' is not prepared"),
    (["--config=configs/quickstart.py", "--config.teacher_checkpoint={tmp}/cut.pth"],
     "'{tmp}/cut.pth' is truncated"),
], ids=["flag_parser", "config_file", "range", "data_set", "teacher_file"])
def test_command_line_exits_with_one_line_and_no_traceback(arguments, expected, files):
  done = run_main(*command_line(arguments, files)[1:])
  assert done.returncode != 0
  assert "Traceback" not in done.stderr, done.stderr[-2000:]
  last = done.stderr.strip().splitlines()[-1]
  assert last.startswith("jaxkd: ") and expected.format(tmp=files) in last, done.stderr[-2000:]


@pytest.mark.slow
def test_help_still_lists_the_flags():
  done = run_main("--helpfull")
  assert "--workdir" in done.stdout + done.stderr and "Traceback" not in done.stderr


@pytest.mark.slow
def test_digits_run_writes_nothing_outside_its_workdir_and_data_dir(tmp_path):
  home, temp = tmp_path / "home", tmp_path / "tmp"
  home.mkdir()
  temp.mkdir()
  done = run_main("--config=configs/default.py", f"--workdir={tmp_path / 'work'}",
                  "--config.dataset=digits", "--config.student_model=cnn_small",
                  f"--config.data_dir={tmp_path / 'data'}", "--config.max_steps=2",
                  "--config.num_epochs=1", "--config.eval_batch_size=120",
                  env={"HOME": str(home), "TMPDIR": str(temp)})
  assert done.returncode == 0, done.stderr[-3000:]
  assert sorted(os.listdir(tmp_path)) == ["data", "home", "tmp", "work"]
  assert not os.listdir(home) and not os.listdir(temp)
