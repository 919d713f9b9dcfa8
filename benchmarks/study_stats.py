"""The statistics of a study's table: mean, sample std, and Welch's t interval of a difference.

Accuracies of one row are its runs over seeds. The difference of two rows' means gets a
95% interval from Welch's t test (unequal variances):

    d = mean(a) − mean(b)      se = sqrt(s_a² / n_a + s_b² / n_b)
    ν = se⁴ / ((s_a² / n_a)² / (n_a − 1) + (s_b² / n_b)² / (n_b − 1))    (Welch–Satterthwaite)
    d ± t_{0.975, ν} · se

It needs two runs on each side (a sample std); with fewer there is no interval.
"""

import dataclasses
import math
import statistics
from typing import Sequence

from scipy import stats

CONFIDENCE = 0.95


def mean(values: Sequence[float]) -> float:
  return statistics.fmean(values)


def sample_std(values: Sequence[float]) -> float | None:
  """The standard deviation with n − 1 in the denominator; None for fewer than 2 values."""
  return statistics.stdev(values) if len(values) >= 2 else None


@dataclasses.dataclass(frozen=True)
class Interval:
  """A difference of means with its confidence interval and Welch's degrees of freedom."""
  difference: float
  low: float
  high: float
  degrees_of_freedom: float


def welch_interval(a: Sequence[float], b: Sequence[float],
                   confidence: float = CONFIDENCE) -> Interval | None:
  """The `confidence` interval of mean(a) − mean(b); None unless both have ≥ 2 values."""
  if len(a) < 2 or len(b) < 2:
    return None
  difference = mean(a) - mean(b)
  var_a, var_b = statistics.variance(a) / len(a), statistics.variance(b) / len(b)
  se = math.sqrt(var_a + var_b)
  if se == 0:  # Identical runs on both sides: no spread to build an interval from.
    return Interval(difference, difference, difference, math.inf)
  dof = (var_a + var_b) ** 2 / (var_a ** 2 / (len(a) - 1) + var_b ** 2 / (len(b) - 1))
  half_width = stats.t.ppf(0.5 + confidence / 2, dof) * se
  return Interval(difference, difference - half_width, difference + half_width, dof)
