"""A persistent XLA compilation cache, on by default: a program compiles once per machine.

`enable()` points JAX's persistent cache at `$JAXKD_COMPILATION_CACHE` (a directory, or
'off'), else at `$JAX_COMPILATION_CACHE_DIR` when JAX is already given one, else at
`<user cache dir>/jaxkd/xla` (`$XDG_CACHE_HOME`, default ~/.cache). A resumed run, another
seed or method of the same shapes, and the next test session then load their compiled steps
instead of compiling them again. Programs that compile in under a second are not stored.

`CompileWatch` tells what a block of code did: how many programs it compiled and in how many
seconds, and how many it loaded from the cache instead.
"""

import dataclasses
import os

import jax
from jax import monitoring

ENVIRONMENT_VARIABLE = "JAXKD_COMPILATION_CACHE"
_CACHE_HIT_EVENT = "/jax/compilation_cache/cache_hits"
_BACKEND_COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"


def default_directory() -> str:
  cache_home = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
  return os.path.join(cache_home, "jaxkd", "xla")


def enable() -> str | None:
  """Turns the persistent cache on as the module docstring says; returns its directory
  (None when it is off)."""
  chosen = os.environ.get(ENVIRONMENT_VARIABLE, "")
  if chosen.lower() == "off":
    jax.config.update("jax_enable_compilation_cache", False)
    return None
  directory = chosen or os.environ.get("JAX_COMPILATION_CACHE_DIR") or default_directory()
  jax.config.update("jax_enable_compilation_cache", True)
  jax.config.update("jax_compilation_cache_dir", directory)
  return directory


@dataclasses.dataclass
class _Counts:
  programs: int = 0  # Compiled or loaded from the cache.
  seconds: float = 0.0
  loaded: int = 0


_counts = _Counts()
_listening = False


def _on_event(event: str, **_) -> None:
  if event == _CACHE_HIT_EVENT:
    _counts.loaded += 1


def _on_duration(event: str, seconds: float, **_) -> None:
  if event == _BACKEND_COMPILE_EVENT:
    _counts.programs += 1
    _counts.seconds += seconds


class CompileWatch:
  """What JAX compiled or loaded from the cache between `CompileWatch()` and `describe()`."""

  def __init__(self):
    global _listening
    if not _listening:
      monitoring.register_event_listener(_on_event)
      monitoring.register_event_duration_secs_listener(_on_duration)
      _listening = True
    self._start = dataclasses.replace(_counts)

  def counts(self) -> tuple[int, int, float]:
    """(programs compiled, programs loaded from the cache, seconds spent on both)."""
    loaded = _counts.loaded - self._start.loaded
    return (_counts.programs - self._start.programs - loaded, loaded,
            _counts.seconds - self._start.seconds)

  def describe(self) -> str:
    """E.g. 'compiled 2 programs and loaded 1 from the compilation cache in 41.3 s'."""
    compiled, loaded, seconds = self.counts()
    parts = [f"compiled {compiled} program{'s' * (compiled != 1)}"] if compiled else []
    if loaded:
      parts.append(f"loaded {loaded} from the compilation cache")
    return f"{' and '.join(parts)} in {seconds:.1f} s" if parts else "compiled nothing"
