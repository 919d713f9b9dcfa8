"""A name → object registry that fails with the list of valid names."""

from typing import Callable, Generic, TypeVar

from jaxkd.ranges import did_you_mean

T = TypeVar("T")


class Registry(Generic[T]):
  """Maps names to objects; unknown names raise a ValueError listing the valid ones (and
  the closest one)."""

  def __init__(self, kind: str):
    self.kind = kind
    self._entries: dict[str, T] = {}

  def register(self, name: str) -> Callable[[T], T]:
    def add(obj: T) -> T:
      if name in self._entries:
        raise ValueError(f"{self.kind} '{name}' is registered twice")
      self._entries[name] = obj
      return obj
    return add

  def get(self, name: str) -> T:
    if name not in self._entries:
      raise ValueError(
          f"unknown {self.kind} '{name}'; valid {self.kind}s: {', '.join(self.names())}"
          f"{did_you_mean(name, self.names())}")
    return self._entries[name]

  def names(self) -> list[str]:
    return sorted(self._entries)

  def __contains__(self, name: str) -> bool:
    return name in self._entries
