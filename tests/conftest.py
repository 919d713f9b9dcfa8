"""Test setup: eight simulated CPU devices, so that sharding is exercised everywhere, and one
JAX compilation cache for every process of a test session.

The flags must be set before JAX initialises its backends, hence at import time here. The
cache directory is made fresh by the first process (pytest itself, or the xdist controller),
whose environment the workers and the subprocesses the tests start inherit: a program that
several tests compile (the same model, method and shapes) is compiled once per session.
`.ci/run` names its own fresh directory in $JAX_COMPILATION_CACHE_DIR.
"""

import atexit
import os
import shutil
import tempfile

import pytest

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
  os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="jaxkd-tests-jax-cache-")
  atexit.register(shutil.rmtree, os.environ["JAX_COMPILATION_CACHE_DIR"], ignore_errors=True)


@pytest.fixture
def x64():
  """Runs the test with 64-bit floats enabled (identities checked to 1e-12 and below)."""
  import jax  # pylint: disable=g-import-not-at-top
  with jax.enable_x64(True):
    yield


@pytest.fixture(scope="session")
def cifar100_data_dir(tmp_path_factory) -> str:
  """A TFDS data_dir holding the real CIFAR-100, prepared by `jaxkd.data.prepare` once.

  From cifar-100-binary.tar.gz in $JAXKD_MANUAL_DIR (default <repository>/../shared/data);
  skipped when it is absent. Prepared into $TFDS_DATA_DIR if set (reused when already
  prepared there; CI gives each run a fresh one), else into a temporary dir of the session.
  Test workers sharing the data_dir take turns (`tfds_source.prepared_builder`'s lock), so it
  is prepared once. About 30 s on 2 cores.
  """
  # pylint: disable=g-import-not-at-top
  from jaxkd.data import cifar10_jpeg_builder, datasets, prepare, tfds_source
  archive = (cifar10_jpeg_builder.default_manual_dir()
             / prepare.LAYOUTS["cifar100"].archive_name)
  if not archive.exists():
    pytest.skip(f"{archive} is absent (set JAXKD_MANUAL_DIR to its folder)")
  data_dir = os.environ.get("TFDS_DATA_DIR") or str(tmp_path_factory.mktemp("cifar100_tfds"))
  tfds_source.prepared_builder(datasets.dataset_source("cifar100"), data_dir)
  return data_dir
