"""One writer per workdir: a second process stops at once, a dead holder never blocks."""

import os
import signal
import socket
import subprocess
import sys

import pytest

from jaxkd import workdir_lock
from tests.core.test_faults import DIGITS_CONFIG
from tests.core.test_train import REPO

HOLDER = """
import sys, time
from jaxkd import workdir_lock
with workdir_lock.hold(sys.argv[1]):
  print("held", flush=True)
  time.sleep(600)
"""


def start_holder(workdir):
  """A process holding `workdir`'s lock until killed; returns once it holds it."""
  holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(workdir)], stdout=subprocess.PIPE,
                            text=True)
  assert holder.stdout.readline().strip() == "held"
  return holder


def test_a_second_holder_in_the_same_process_is_refused_until_the_first_lets_go(tmp_path):
  with workdir_lock.hold(str(tmp_path)):
    with pytest.raises(workdir_lock.WorkdirInUse,
                       match=f"is in use by process {os.getpid()} on host "
                             f"{socket.gethostname()} since 20"):
      with workdir_lock.hold(str(tmp_path)):
        pass
  with workdir_lock.hold(str(tmp_path)):  # Released at the end of the block.
    pass


def test_a_holder_killed_with_sigkill_leaves_no_stale_lock(tmp_path):
  holder = start_holder(tmp_path)
  try:
    with pytest.raises(workdir_lock.WorkdirInUse,
                       match=f"process {holder.pid} on host .*kill {holder.pid} on"):
      with workdir_lock.hold(str(tmp_path)):
        pass
  finally:
    holder.send_signal(signal.SIGKILL)
    holder.wait()
  assert os.path.exists(tmp_path / workdir_lock.LOCK_FILE)  # The file stays ...
  with workdir_lock.hold(str(tmp_path)):  # ... and does not block.
    pass


def test_main_on_a_busy_workdir_stops_at_once_naming_the_holder(tmp_path):
  config_file = tmp_path / "digits_ce.py"
  config_file.write_text(DIGITS_CONFIG)
  workdir = tmp_path / "run"
  workdir.mkdir()
  holder = start_holder(workdir)
  try:
    intruder = subprocess.run(
        [sys.executable, "-m", "jaxkd.main", f"--config={config_file}", f"--workdir={workdir}"],
        cwd=REPO, capture_output=True, text=True, timeout=240, check=False)
  finally:
    holder.send_signal(signal.SIGKILL)
    holder.wait()
  assert intruder.returncode == 1
  last_line = intruder.stderr.strip().splitlines()[-1]
  assert last_line.startswith(f"jaxkd: --workdir={workdir} is in use by process {holder.pid} "
                              f"on host {socket.gethostname()} since "), last_line
  assert not (workdir / "checkpoints").exists()  # It wrote nothing.
