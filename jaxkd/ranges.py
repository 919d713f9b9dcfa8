"""Valid ranges of numeric settings, checked before anything runs.

Each config section (a method's, an optimizer's, the run's own fields) declares a table
`{field: Range}`; `check_ranges` reports the first value outside its range in one line.
"""

import dataclasses
import difflib
import math
from typing import Any, Iterable, Mapping, Sequence


@dataclasses.dataclass(frozen=True)
class Range:
  """The interval a numeric setting must lie in; `None` leaves that side unbounded."""
  low: float | None = None
  high: float | None = None
  low_open: bool = False
  high_open: bool = False
  integer: bool = False  # Named in the message only: types are checked apart.

  def __contains__(self, value: float) -> bool:
    if self.low is not None and (value <= self.low if self.low_open else value < self.low):
      return False
    return self.high is None or (value < self.high if self.high_open else value <= self.high)

  def __str__(self) -> str:
    if self.high is None:
      bound = f"{'>' if self.low_open else '≥'} {self.low}"
    elif self.low is None:
      bound = f"{'<' if self.high_open else '≤'} {self.high}"
    else:
      bound = (f"in {'(' if self.low_open else '['}{self.low}, {self.high}"
               f"{')' if self.high_open else ']'}")
    return f"an integer {bound}" if self.integer else bound


POSITIVE = Range(0, low_open=True)  # Temperatures, multiples.
NON_NEGATIVE = Range(0)  # Loss weights.
AT_LEAST_ONE = Range(1, integer=True)  # Counts.
PROBABILITY = Range(0, 1)


def closest_name(name: Any, names: Iterable[Any]) -> str | None:
  """The one of `names` closest to a mistyped `name` (difflib), or None when none is close."""
  close = difflib.get_close_matches(str(name), [str(n) for n in names], n=1)
  return close[0] if close else None


def did_you_mean(name: Any, names: Iterable[Any]) -> str:
  """"; did you mean 'X'?" (to end a message) for the one of `names` closest to an unknown
  `name`, else ''."""
  close = closest_name(name, names)
  return f"; did you mean '{close}'?" if close else ""


def check_choice(name: str, value: Any, choices: Sequence[Any]) -> None:
  """Raises ValueError naming `name`, its value and the valid choices when `value` is none of
  `choices` (for settings that take one of a few names)."""
  if value not in choices:
    raise ValueError(f"{name} must be one of {', '.join(map(str, choices))}, got {value!r}"
                     f"{did_you_mean(value, choices)}")


def _entries(value: Any) -> tuple[Any, ...]:
  return tuple(value) if isinstance(value, (tuple, list)) else (value,)


def check_ranges(section: str, values: Mapping[str, Any], ranges: Mapping[str, Range]) -> None:
  """Raises ValueError naming `section.field`, its value and its range for the first float
  of `values` that is NaN or infinite, then for the first value outside its range (of a
  tuple, each entry is checked)."""
  for field, value in values.items():
    if any(isinstance(e, float) and not math.isfinite(e) for e in _entries(value)):
      valid = f" {ranges[field]}" if field in ranges else ""
      raise ValueError(f"{section}.{field} must be a finite number{valid}, got {value!r}")
  for field, valid in ranges.items():
    value = values[field]
    for entry in _entries(value):
      if isinstance(entry, bool) or not isinstance(entry, (int, float)) or entry not in valid:
        raise ValueError(f"{section}.{field} must be {valid}, got {value!r}")
