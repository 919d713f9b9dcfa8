"""Nothing silently wrong, nothing lost: NaN steps, stale stages, SIGTERM, corrupt checkpoints."""

import glob
import json
import os
import re
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from jaxkd import checkpoint, data, run_builder, run_lanes, run_record, train
from jaxkd import step as step_lib
from tests.config_files import load_config
from tests.core.test_config import load_config_with_flags
from tests.core.test_train import REPO, digits_ce, exported_params


def checkpoint_dirs(workdir):
  """Every step directory of `workdir`'s checkpoints and best checkpoint."""
  return [path for sub in ("checkpoints", "best")
          for path in glob.glob(os.path.join(workdir, sub, "*"))
          if os.path.basename(path).isdigit()]


def assert_all_finite(step_dir):
  state = ocp.StandardCheckpointer().restore(os.path.join(step_dir, "state"))
  for leaf in jax.tree.leaves(state):
    if np.issubdtype(np.asarray(leaf).dtype, np.inexact):
      assert np.all(np.isfinite(leaf)), step_dir


def poison_step(monkeypatch, bad_step):
  """Makes the images of training step `bad_step` (1-based) NaN, as a corrupt record would."""
  create_input = data.create_input

  def create_poisoned_input(config, mesh):
    inputs = create_input(config, mesh)
    clean_batches = inputs.train_batches

    def train_batches(start_step=0):
      for step, batch in enumerate(clean_batches(start_step), start_step + 1):
        yield dict(batch, image=batch["image"] * np.nan) if step == bad_step else batch

    inputs.train_batches = train_batches
    return inputs

  monkeypatch.setattr(data, "create_input", create_poisoned_input)


@pytest.mark.slow
def test_non_finite_step_stops_the_run_before_it_is_saved_and_a_fixed_rerun_resumes(
    tmp_path, monkeypatch):
  config = digits_ce(12)
  config.checkpoint_every_steps, config.eval_every_steps, config.log_every_steps = 2, 4, 50
  with monkeypatch.context() as patch:
    poison_step(patch, 7)
    with pytest.raises(FloatingPointError,
                       match="--config.optimizer.learning_rate=0.025 \\(half") as error:
      train.train_and_evaluate(config, str(tmp_path))
  # The network's forward pass swallows the NaN (the loss stays finite); its gradients do not.
  assert re.search(r"step 7 made batch_stats, params, student_opt_state non-finite .* it "
                   r"resumes from step 6", str(error.value)), error.value
  saved = checkpoint_dirs(str(tmp_path))
  assert sorted(int(os.path.basename(p)) for p in saved) == [4, 4, 6]  # best/4, checkpoints/4, 6
  for step_dir in saved:
    assert_all_finite(step_dir)

  config.optimizer.learning_rate = 0.02  # The fix may change the config: it is recorded.
  summary = train.train_and_evaluate(config, str(tmp_path))
  assert summary["steps"] == 12 and summary["final_test_accuracy"] > 0.15  # Above chance.
  assert summary["config_amendments"] == [
      {"diverged_at_step": 7, "changes": ["optimizer.learning_rate: 0.05 → 0.02"]}]
  assert [point["step"] for point in summary["history"]] == [4, 8, 12]  # Resumed from 6.


def small_quickstart(max_steps):
  config = load_config("quickstart")
  config.num_epochs, config.max_steps = 1, max_steps
  return config


def quickstart_with_flags(*overrides):
  """The quickstart pipeline as `python -m jaxkd.main` runs it with `overrides`."""
  return load_config_with_flags(os.path.join(REPO, "configs", "quickstart.py"), *overrides)


def printed_flag(message):
  """The one `--config.a.b=v` flag that error `message` tells to add to the command."""
  printed = re.findall(r"--config\.[\w.]+=[\w.,+-]+", message)
  assert len(printed) == 1, message
  return printed[0]


SHORT_QUICKSTART = ("--config.num_epochs=1", "--config.max_steps=4")


@pytest.mark.slow
def test_the_printed_restart_stages_flag_retrains_the_changed_stage(tmp_path):
  train.train_and_evaluate(quickstart_with_flags(*SHORT_QUICKSTART), str(tmp_path))
  changed = (*SHORT_QUICKSTART, "--config.stages.student.kd.temperature=2")
  with pytest.raises(run_record.StaleRunError) as error:
    train.train_and_evaluate(quickstart_with_flags(*changed), str(tmp_path))
  hint = printed_flag(str(error.value))
  summary = train.train_and_evaluate(quickstart_with_flags(*changed, hint), str(tmp_path))
  assert hint == "--config.restart_stages=student"
  assert summary["stages"]["student"]["config"]["kd"]["temperature"] == 2.0


@pytest.mark.slow
def test_the_printed_learning_rate_flag_resumes_a_diverged_stage(tmp_path, monkeypatch):
  flags = (*SHORT_QUICKSTART, "--config.stages.teacher.checkpoint_every_steps=2")
  with monkeypatch.context() as patch:
    poison_step(patch, 3)
    with pytest.raises(FloatingPointError, match="it resumes from step 2") as error:
      train.train_and_evaluate(quickstart_with_flags(*flags), str(tmp_path))
  hint = printed_flag(str(error.value))
  summary = train.train_and_evaluate(quickstart_with_flags(*flags, hint), str(tmp_path))
  assert hint == "--config.stages.teacher.optimizer.learning_rate=0.025"
  assert summary["stages"]["teacher"]["config_amendments"] == [
      {"diverged_at_step": 3, "changes": ["optimizer.learning_rate: 0.05 → 0.025"]}]
  assert summary["stages"]["student"]["steps"] == 4


def test_a_bad_student_stage_is_refused_before_the_teacher_trains(tmp_path):
  config = small_quickstart(2)
  config.stages.student.method = "kdd"
  with pytest.raises(ValueError, match="stage 'student': unknown method 'kdd'"):
    train.train_and_evaluate(config, str(tmp_path))
  assert not os.path.exists(tmp_path / "teacher")


@pytest.mark.slow
def test_changed_stage_stops_with_what_changed_and_restart_stages_retrains_it(tmp_path):
  first = train.train_and_evaluate(small_quickstart(6), str(tmp_path))
  assert first["stages"]["teacher"]["steps"] == 6

  changed = small_quickstart(6)
  changed.stages.student.kd.temperature = 2.0
  with pytest.raises(run_record.StaleRunError,
                     match=r"'student' \(kd.temperature: 4.0 → 2.0\).*restart_stages=student"):
    train.train_and_evaluate(changed, str(tmp_path))

  longer = small_quickstart(0)  # The teacher extends to its 22 steps: the student is stale.
  with pytest.raises(run_record.StaleRunError,
                     match=r"'student' \(teacher 0: step 6 → \(stage 'teacher' trains first\)\)"):
    train.train_and_evaluate(longer, str(tmp_path))
  assert (tmp_path / "student" / "export").exists()  # Nothing trained, nothing moved.

  longer.restart_stages = "student"
  summary = train.train_and_evaluate(longer, str(tmp_path))
  teacher, student = summary["stages"]["teacher"], summary["stages"]["student"]
  assert teacher["steps"] == student["steps"] == 22
  assert student["teacher_test_accuracy"] == [pytest.approx(teacher["final_test_accuracy"])]
  assert glob.glob(str(tmp_path / "student.replaced-*" / "export"))
  record = run_record.read_record(str(tmp_path / "student"))
  assert record["inputs"]["teacher 0"]["step"] == 22
  assert student["config"]["max_steps"] == 0
  rerun = train.train_and_evaluate(longer, str(tmp_path))  # Same flags again: nothing retrains.
  assert rerun["stages"]["student"]["wall_time_s"] == student["wall_time_s"]


DIGITS_CONFIG = '''
from jaxkd import recipes

def get_config():
  config = recipes.cifar_run("ce", "cnn_small", "digits")
  config.batch_size, config.num_epochs, config.max_steps = 64, 30, 200
  config.eval_every_steps, config.log_every_steps = 10, 1000
  return config
'''


def start_cli(config_file, workdir):
  """`python -m jaxkd.main` on two devices, its output in `workdir`.log (a pipe could fill)."""
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2")
  log = open(f"{workdir}.log", "w")
  return subprocess.Popen([sys.executable, "-m", "jaxkd.main", f"--config={config_file}",
                           f"--workdir={workdir}"], cwd=REPO, env=env, text=True,
                          stdout=log, stderr=subprocess.STDOUT)


def finish(process, workdir):
  """Waits for `process` (from start_cli); returns its exit status and output."""
  status = process.wait(timeout=240)
  with open(f"{workdir}.log") as f:
    return status, f.read()


@pytest.mark.slow
def test_sigterm_saves_at_the_next_step_and_the_rerun_finishes_as_a_straight_run(tmp_path):
  config_file = tmp_path / "digits_ce.py"
  config_file.write_text(DIGITS_CONFIG)
  straight = start_cli(config_file, tmp_path / "straight")
  workdir = tmp_path / "stopped"
  stopped = start_cli(config_file, workdir)
  deadline = time.time() + 240
  while not (workdir / "checkpoints" / "10").is_dir():
    assert stopped.poll() is None and time.time() < deadline, finish(stopped, workdir)[1][-3000:]
    time.sleep(0.02)
  stopped.send_signal(signal.SIGTERM)
  status, output = finish(stopped, workdir)
  assert status != 0, output[-3000:]
  step = int(re.search(r"SIGTERM stopped training after step (\d+): checkpoint \d+ is saved in "
                       r".*; rerun the same command to resume", output).group(1))
  assert 10 < step < 200 and (workdir / "checkpoints" / str(step)).is_dir()

  rerun = start_cli(config_file, workdir)
  status, output = finish(rerun, workdir)
  assert status == 0, output[-3000:]
  status, output = finish(straight, tmp_path / "straight")
  assert status == 0, output[-3000:]
  for a, b in zip(jax.tree.leaves(exported_params(str(tmp_path / "straight"))),
                  jax.tree.leaves(exported_params(str(workdir)))):
    np.testing.assert_array_equal(a, b)
  assert json.load(open(workdir / "summary.json"))["steps"] == 200


def test_saves_cut_short_by_a_kill_are_removed_when_the_store_opens(tmp_path, caplog):
  leftovers = [tmp_path / "checkpoints" / "30.orbax-checkpoint-tmp-1796677000" / "state",
               tmp_path / "best" / "30.orbax-checkpoint-tmp-1796677001"]
  for path in leftovers:
    path.mkdir(parents=True)
  (tmp_path / "checkpoints" / "20").mkdir()  # A finished checkpoint stays.
  store = checkpoint.CheckpointStore(str(tmp_path), keep=2)
  store.close()
  assert os.listdir(tmp_path / "checkpoints") == ["20"] and not os.listdir(tmp_path / "best")
  removed = [record.getMessage() for record in caplog.records
             if "unfinished checkpoint save" in record.getMessage()]
  assert len(removed) == 1 and "Removed 2 unfinished checkpoint save(s)" in removed[0]


@pytest.mark.slow
def test_corrupt_latest_checkpoint_is_moved_aside_and_the_previous_one_resumes(tmp_path, caplog):
  config = digits_ce(20)
  config.checkpoint_every_steps = 5
  train.train_and_evaluate(config, str(tmp_path))
  latest = tmp_path / "checkpoints" / "20"
  victim = max((p for p in latest.rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
  victim.write_bytes(victim.read_bytes()[:10])  # Truncated, as a crash mid-copy leaves it.

  resumed = train.train_and_evaluate(digits_ce(30), str(tmp_path))
  assert resumed["steps"] == 30
  assert [point["step"] for point in resumed["history"]] == [22, 30]  # From 15, not 20.
  moved = glob.glob(str(tmp_path / "checkpoints" / "20.corrupt-*"))
  assert len(moved) == 1 and os.path.exists(os.path.join(moved[0], os.path.relpath(victim, latest)))
  assert any("20.corrupt-" in record.getMessage() for record in caplog.records)

  other = digits_ce(30)
  other.student_model = "cnn_large"
  with pytest.raises(run_record.StaleRunError, match="student_model: 'cnn_small' → 'cnn_large'"):
    train.train_and_evaluate(other, str(tmp_path))
  os.remove(tmp_path / run_record.RECORD_FILE)  # A workdir of an older jaxkd: no record.
  with pytest.raises(ValueError, match=r"checkpoint 30 in .* holds another model than the "
                                       r"config's 'cnn_large' \(student.bn0.bias has shape "
                                       r"\(16,\), expected \(32,\)") as mismatch:
    train.train_and_evaluate(other, str(tmp_path))
  # The printed flag works as given: the old run is moved aside and the new model trains.
  field, value = re.search(r"--config\.(restart_stages)=(\w+)", str(mismatch.value)).groups()
  other[field] = value
  retrained = train.train_and_evaluate(other, str(tmp_path))
  assert retrained["steps"] == 30 and retrained["student_model"] == "cnn_large"
  assert len(glob.glob(f"{tmp_path}.replaced-*")) == 1


def test_signals_are_noted_from_the_first_trained_step_not_during_set_up(tmp_path, monkeypatch):
  # Before it (resuming, the first compile), a SIGTERM ends the process at once: there is
  # nothing to save, and a preemption's grace period can be shorter than a compile.
  handlers = []
  build = run_builder.build_run

  def build_recording_handlers(*args, **kwargs):
    run, descriptions = build(*args, **kwargs)
    step = run.train_step

    def recording_step(*step_args):
      handlers.append(signal.getsignal(signal.SIGTERM))
      return step(*step_args)

    run.train_step = recording_step
    return run, descriptions

  monkeypatch.setattr(run_builder, "build_run", build_recording_handlers)
  before = signal.getsignal(signal.SIGTERM)
  train.train_and_evaluate(digits_ce(3), str(tmp_path / "run"))
  assert handlers[0] is before and handlers[1] is not before and len(handlers) == 3
  assert handlers[1].__name__ == "_note"
  assert signal.getsignal(signal.SIGTERM) is before  # Restored once the run is over.


@pytest.mark.slow
def test_a_signal_during_the_last_evaluation_or_export_stops_after_the_results(
    tmp_path, monkeypatch):
  finish = run_lanes.finish_lane

  def finish_while_signalled(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGTERM)
    return finish(*args, **kwargs)

  monkeypatch.setattr(run_lanes, "finish_lane", finish_while_signalled)
  workdir = str(tmp_path / "run")
  with pytest.raises(train.TrainingInterrupted, match="SIGTERM arrived as the run finished"):
    train.train_and_evaluate(digits_ce(10), workdir)
  with open(os.path.join(workdir, "summary.json")) as f:
    assert json.load(f)["steps"] == 10


def signal_during_a_slow_evaluation(monkeypatch, signalled_at):
  """Makes each evaluation batch take a second; SIGTERM arrives at the second batch of the
  first evaluation, its time appended to `signalled_at`."""
  evaluate = step_lib.evaluate_replicas

  def slow_evaluation(eval_step, params, batch_stats, batches, *args):
    def slow_batches():
      for index, batch in enumerate(batches):
        if index == 1 and not signalled_at:
          signalled_at.append(time.time())
          os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(1)
        yield batch

    return evaluate(eval_step, params, batch_stats, slow_batches(), *args)

  monkeypatch.setattr(step_lib, "evaluate_replicas", slow_evaluation)


@pytest.mark.slow
def test_sigterm_during_an_evaluation_stops_at_once_and_the_rerun_redoes_it(
    tmp_path, monkeypatch):
  config = digits_ce(10)
  config.eval_every_steps, config.eval_batch_size = 5, 24  # 15 batches: 15 s when slowed.
  straight = train.train_and_evaluate(config, str(tmp_path / "straight"))
  workdir = str(tmp_path / "stopped")
  signalled_at = []
  with monkeypatch.context() as patch:
    signal_during_a_slow_evaluation(patch, signalled_at)
    with pytest.raises(train.TrainingInterrupted, match="SIGTERM stopped training after step "
                                                        "5: .*rerun the same command"):
      train.train_and_evaluate(config, workdir)
  assert time.time() - signalled_at[0] < 5
  assert not os.listdir(os.path.join(workdir, "best"))  # Not judged: not saved as the best.

  resumed = train.train_and_evaluate(config, workdir)
  assert resumed["history"] == straight["history"]
  assert resumed["best_step"] == straight["best_step"]
  for a, b in zip(jax.tree.leaves(exported_params(str(tmp_path / "straight"))),
                  jax.tree.leaves(exported_params(workdir))):
    np.testing.assert_array_equal(a, b)
