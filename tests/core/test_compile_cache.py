"""The persistent compilation cache: where it goes, how it is turned off, what it reports."""

import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import pytest

from jaxkd import compile_cache
from tests.core.test_train import REPO


@pytest.fixture
def restore_cache_settings():
  saved = (jax.config.jax_enable_compilation_cache, jax.config.jax_compilation_cache_dir)
  yield
  jax.config.update("jax_enable_compilation_cache", saved[0])
  jax.config.update("jax_compilation_cache_dir", saved[1])


@pytest.mark.parametrize("environment, expected", [
    ({"JAXKD_COMPILATION_CACHE": "/somewhere/xla"}, "/somewhere/xla"),
    ({"JAXKD_COMPILATION_CACHE": "off"}, None),
    ({"JAX_COMPILATION_CACHE_DIR": "/given/to/jax"}, "/given/to/jax"),
    ({"XDG_CACHE_HOME": "/home/me/.cache"}, "/home/me/.cache/jaxkd/xla"),
])
def test_the_cache_directory_follows_the_environment(environment, expected, monkeypatch,
                                                      restore_cache_settings):
  for name in ("JAXKD_COMPILATION_CACHE", "JAX_COMPILATION_CACHE_DIR", "XDG_CACHE_HOME"):
    monkeypatch.delenv(name, raising=False)
  for name, value in environment.items():
    monkeypatch.setenv(name, value)
  assert compile_cache.enable() == expected
  assert jax.config.jax_enable_compilation_cache == (expected is not None)
  if expected:
    assert jax.config.jax_compilation_cache_dir == expected


SECOND_PROCESS = """
import sys
import jax, jax.numpy as jnp
from jaxkd import compile_cache
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
compile_cache.enable()
x = jax.block_until_ready(jnp.ones((8, 8)))
watch = compile_cache.CompileWatch()
jax.jit(lambda x: jnp.sin(x) @ x.T + float(sys.argv[1]))(x).block_until_ready()
print(watch.counts()[:2])
"""


def test_a_second_process_loads_what_the_first_compiled(tmp_path):
  environment = dict(os.environ, JAXKD_COMPILATION_CACHE=str(tmp_path / "xla"))

  def counts(constant):
    output = subprocess.run([sys.executable, "-c", SECOND_PROCESS, constant], cwd=REPO,
                            env=environment, capture_output=True, text=True, check=True).stdout
    return output.strip().splitlines()[-1]

  assert counts("1.0") == "(1, 0)"  # Compiled, and stored.
  assert counts("1.0") == "(0, 1)"  # The same program: loaded.
  assert counts("2.0") == "(1, 0)"  # Another program compiles.


def test_the_watch_describes_what_compiled():
  x = jax.block_until_ready(jnp.ones(3))
  watch = compile_cache.CompileWatch()
  assert watch.describe() == "compiled nothing"
  jax.jit(lambda x: x * 3.5 + 0.25)(x).block_until_ready()
  assert watch.describe().startswith("compiled 1 program in ")
