"""Two processes train exactly as one: `jax.distributed` on CPU over a loopback coordinator.

The real command line (`python -m jaxkd.main --config=configs/quickstart.py`) runs the
quickstart pipeline (a CE teacher, then a KD student that loads the teacher's export) for a
few steps on the real digits data, twice at once:
- ONE process with 4 CPU devices;
- TWO processes with 2 CPU devices each, joined through
  `--coordinator_address=127.0.0.1:<port> --num_processes=2 --process_id=<i>`.
The mesh has 4 devices and the global batch is 64 in both, so every stage's exported
parameters must agree to float32 round-off (the cross-process all-reduce may add in
another order), and so must the summaries.
"""

import json
import os
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
QUICKSTART = os.path.join(REPO, "configs", "quickstart.py")
STAGES = ("teacher", "student")
STEPS = 3
# The teacher as small as the student: what is checked is how processes train, not a model.
SMALL_TEACHER = ("--config.stages.teacher.student_model=cnn_small",
                 "--config.stages.student.teacher_model=cnn_small")
GLOBAL_DEVICES = 4
NUM_PROCESSES = 2
TOLERANCE = 1e-5
TIMEOUT_S = 300  # About 45 s on an idle 2-core machine; generous for a loaded one.
# Variables by which a launcher describes a multi-process job: a child must not inherit them.
LAUNCHER_VARIABLE_PREFIXES = ("SLURM_", "OMPI_", "PMI_", "TPU_", "MEGASCALE_", "JAX_COORDINATOR",
                              "JAX_NUM_PROCESSES", "JAX_PROCESS_ID", "JAX_LOCAL_DEVICE_IDS")


def free_port() -> int:
  with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
    probe.bind(("127.0.0.1", 0))
    return probe.getsockname()[1]


def child_env(devices_per_process: int) -> dict[str, str]:
  env = {k: v for k, v in os.environ.items() if not k.startswith(LAUNCHER_VARIABLE_PREFIXES)}
  env.update(XLA_FLAGS=f"--xla_force_host_platform_device_count={devices_per_process}",
             JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="2",
             PYTHONPATH=os.pathsep.join(filter(None, [REPO, os.environ.get("PYTHONPATH")])))
  return env


def start_quickstart(workdir: str, data_dir: str, devices_per_process: int, log_path: str,
                     *process_flags: str) -> tuple[subprocess.Popen, str]:
  command = [sys.executable, "-m", "jaxkd.main", f"--config={QUICKSTART}",
             f"--workdir={workdir}", f"--config.max_steps={STEPS}",
             f"--config.data_dir={data_dir}", *SMALL_TEACHER, *process_flags]
  with open(log_path, "w") as log:
    process = subprocess.Popen(command, cwd=REPO, env=child_env(devices_per_process),
                               stdout=log, stderr=subprocess.STDOUT)
  return process, log_path


def log_tail(path: str, chars: int = 6000) -> str:
  with open(path, errors="replace") as f:
    return f.read()[-chars:]


def wait_all(runs: dict[str, tuple[subprocess.Popen, str]]) -> None:
  """Waits for every run; on a failure or the timeout, stops the others and fails with logs."""
  deadline = time.monotonic() + TIMEOUT_S
  failure = None
  while failure is None and any(p.poll() is None for p, _ in runs.values()):
    failed = [name for name, (p, _) in runs.items() if p.poll() not in (None, 0)]
    if failed:
      failure = f"{', '.join(failed)} exited with a non-zero status"
    elif time.monotonic() > deadline:
      failure = f"timed out after {TIMEOUT_S} s"
    else:
      time.sleep(0.5)
  for process, _ in runs.values():
    if process.poll() is None:
      process.kill()
    process.wait()
  if failure is None and any(p.returncode for p, _ in runs.values()):
    failure = "a run exited with a non-zero status"
  if failure:
    logs = "\n".join(f"----- {name} (exit status {p.returncode}) -----\n{log_tail(path)}"
                     for name, (p, path) in runs.items())
    pytest.fail(f"{failure}\n{logs}")


def exported_variables(stage_dir: str):
  """A stage's exported model, restored onto one device whatever topology saved it."""
  path = os.path.join(stage_dir, "export", "variables")
  checkpointer = ocp.StandardCheckpointer()
  one_device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  like = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=one_device),
                      checkpointer.metadata(path).item_metadata.tree)
  return checkpointer.restore(path, like)


def read_summary(workdir: str) -> dict:
  with open(os.path.join(workdir, "summary.json")) as f:
    return json.load(f)


def train_in_one_and_two_processes(tmp_path, *flags: str) -> tuple[str, str]:
  """The workdirs of the quickstart (with `flags`) trained in one process and in two."""
  if jax.config.jax_cpu_collectives_implementation is None:
    pytest.skip("this jaxlib has no cross-process CPU collectives (gloo or mpi)")
  one, two = str(tmp_path / "one_process"), str(tmp_path / "two_processes")
  coordinator = f"127.0.0.1:{free_port()}"
  runs = {"one process": start_quickstart(one, str(tmp_path / "data_one"), GLOBAL_DEVICES,
                                          str(tmp_path / "one.log"), *flags)}
  for process_id in range(NUM_PROCESSES):
    runs[f"process {process_id} of {NUM_PROCESSES}"] = start_quickstart(
        two, str(tmp_path / "data_two"), GLOBAL_DEVICES // NUM_PROCESSES,
        str(tmp_path / f"two_{process_id}.log"), *flags,
        f"--coordinator_address={coordinator}", f"--num_processes={NUM_PROCESSES}",
        f"--process_id={process_id}")
  wait_all(runs)
  return one, two


def assert_same_exports(one_dir: str, two_dir: str, what: str) -> None:
  """The models exported in `one_dir` and `two_dir` agree to TOLERANCE."""
  expected, actual = exported_variables(one_dir), exported_variables(two_dir)
  assert jax.tree.structure(actual) == jax.tree.structure(expected)
  for (path, want), got in zip(jax.tree.leaves_with_path(expected), jax.tree.leaves(actual)):
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=0, atol=TOLERANCE,
                               err_msg=f"{what} {jax.tree_util.keystr(path)}")


@pytest.mark.slow
def test_two_processes_train_the_quickstart_exactly_as_one(tmp_path):
  one, two = train_in_one_and_two_processes(tmp_path)
  summary_one, summary_two = read_summary(one), read_summary(two)
  for stage in STAGES:
    reference, distributed = summary_one["stages"][stage], summary_two["stages"][stage]
    assert reference["steps"] == distributed["steps"] == STEPS
    assert reference["hardware"].startswith(f"{GLOBAL_DEVICES}x ")
    assert "1 process(es)" in reference["hardware"]
    assert distributed["hardware"].startswith(f"{GLOBAL_DEVICES}x ")
    assert f"{NUM_PROCESSES} process(es)" in distributed["hardware"]
    assert distributed["final_test_accuracy"] == reference["final_test_accuracy"]
    assert distributed["teacher_test_accuracy"] == reference["teacher_test_accuracy"]
    assert_same_exports(os.path.join(one, stage), os.path.join(two, stage), stage)
