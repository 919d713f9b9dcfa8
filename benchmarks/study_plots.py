"""A study's PNG plots, next to STUDY.md in study/<suite>_*.png (matplotlib, Agg backend).

- `<suite>_accuracy.png`: test accuracy against epoch, per method: the mean over seeds as a
  line, the min–max over seeds as a band; the reference models as dashed levels.
- `<suite>_teacher.png`, for methods whose teacher trains (history has teacher/0/*): the
  teacher's test accuracy and its relative distance ‖θ − θ₀‖ / ‖θ₀‖ against epoch.
"""

from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top,wrong-import-position
import numpy as np  # pylint: disable=g-import-not-at-top,wrong-import-position

from benchmarks import study_results  # pylint: disable=wrong-import-position
from benchmarks.study_sources import Reference  # pylint: disable=wrong-import-position

TEACHER_ACCURACY = "teacher/0/test_accuracy"
TEACHER_DISTANCE = "teacher/0/relative_distance"
BAND_NOTE = "line: mean over seeds; band: min–max"


def seed_curves(histories: Sequence[Sequence[dict]], key: str) -> tuple[np.ndarray, np.ndarray]:
  """(epochs, values[seed, point]) of `key` at the steps every seed evaluated."""
  steps = sorted(set.intersection(*({p["step"] for p in h if key in p} for h in histories)))
  by_step = [{p["step"]: p for p in h} for h in histories]
  epochs = np.array([by_step[0][step]["epoch"] for step in steps])
  values = np.array([[points[step][key] for step in steps] for points in by_step])
  return epochs, values


def _plot_band(axis, epochs, values, label, scale=1.0) -> None:
  line, = axis.plot(epochs, scale * values.mean(axis=0), marker=".", label=label)
  if len(values) > 1:
    axis.fill_between(epochs, scale * values.min(axis=0), scale * values.max(axis=0),
                      color=line.get_color(), alpha=0.2)


def accuracy_plot(results: Sequence[study_results.MethodResult],
                  references: Sequence[Reference], title: str, path: str) -> None:
  """Test accuracy (%) against epoch, one line (mean) and band (min–max) per method."""
  figure, axis = plt.subplots(figsize=(8, 5))
  for result in results:
    epochs, values = seed_curves(result.histories(), "test/accuracy")
    _plot_band(axis, epochs, values, f"{result.entry.label} (n={len(result.seeds)})", 100)
  for reference in references:
    axis.axhline(100 * reference.accuracy, color="gray", linestyle="--", linewidth=1)
    axis.annotate(reference.name, (0, 100 * reference.accuracy), xycoords=("axes fraction", "data"),
                  fontsize=7, color="gray", va="bottom")
  axis.set(xlabel="epoch", ylabel="test accuracy (%)", title=f"{title} ({BAND_NOTE})")
  axis.grid(alpha=0.3)
  axis.legend(fontsize=7, loc="lower right")
  figure.tight_layout()
  figure.savefig(path, dpi=120)
  plt.close(figure)


def has_adaptive_teacher(result: study_results.MethodResult) -> bool:
  return all(any(TEACHER_ACCURACY in p for p in history) for history in result.histories())


def teacher_plot(results: Sequence[study_results.MethodResult], title: str, path: str) -> bool:
  """The adapting teachers' test accuracy and relative distance against epoch; False (and no
  file) when no method's teacher trains."""
  adaptive = [r for r in results if has_adaptive_teacher(r)]
  if not adaptive:
    return False
  figure, (accuracy_axis, distance_axis) = plt.subplots(1, 2, figsize=(11, 4.5))
  for result in adaptive:
    label = f"{result.entry.label} (n={len(result.seeds)})"
    epochs, values = seed_curves(result.histories(), TEACHER_ACCURACY)
    _plot_band(accuracy_axis, epochs, values, label, 100)
    epochs, values = seed_curves(result.histories(), TEACHER_DISTANCE)
    _plot_band(distance_axis, epochs, values, label)
  accuracy_axis.set(xlabel="epoch", ylabel="teacher test accuracy (%)")
  distance_axis.set(xlabel="epoch", ylabel="‖θ − θ₀‖ / ‖θ₀‖")
  for axis in (accuracy_axis, distance_axis):
    axis.grid(alpha=0.3)
    axis.legend(fontsize=7)
  figure.suptitle(f"{title} ({BAND_NOTE})")
  figure.tight_layout()
  figure.savefig(path, dpi=120)
  plt.close(figure)
  return True
