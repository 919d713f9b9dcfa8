"""`curves.png`: a finished run's learning curves, drawn from what it wrote in its workdir.

    path = jaxkd.curves.write_curves(workdir)   # workdir/curves.png (None off process 0)

Panels, each drawn when its data exists:
- train loss against step: the `train/loss` scalars of the TensorBoard event files in the
  workdir (written every `log_every_steps` when TensorFlow is present; a machine without it
  logs train metrics only, and the panel is left out);
- evaluation accuracy against epoch: `summary.json`'s history, test and (when held out)
  validation;
- for a teacher that trains (ATSC): each teacher's test accuracy (left axis, starting at its
  accuracy before step 0) and its relative distance ‖θ − θ₀‖ / ‖θ₀‖ from its starting weights
  (right axis, dashed) against epoch.
A resumed run's event files overlap where training was repeated after the last checkpoint;
the later file's value wins at each step.
"""

import glob
import importlib
import os
import re
from typing import Any, Optional, Sequence

from absl import logging
import jax

from jaxkd import reporting

CURVES_FILE = "curves.png"
TRAIN_LOSS_TAG = "train/loss"
EVAL_SPLITS = ("test", "validation")
TRAIN_LOSS_TITLE = "train loss"
ACCURACY_TITLE = "evaluation accuracy"
TEACHER_TITLE = "adapting teacher"
_TEACHER_KEY = re.compile(r"teacher/(\d+)/test_accuracy")


def train_loss(workdir: str) -> dict[int, float]:
  """{step: train loss} from the TensorBoard event files in `workdir`; {} when there are none
  or TensorBoard (which reads them) is not installed."""
  files = sorted(glob.glob(os.path.join(workdir, "events.out.tfevents.*")),
                 key=lambda path: (os.path.getmtime(path), path))
  if not files:
    return {}
  try:
    # pylint: disable=g-import-not-at-top
    from tensorboard.backend.event_processing import event_file_loader
    from tensorboard.util import tensor_util
  except ImportError:
    logging.warning("TensorBoard is not installed: curves.png has no train-loss panel.")
    return {}
  losses = {}
  for path in files:
    for event in event_file_loader.EventFileLoader(path).Load():
      for value in event.summary.value:
        if value.tag != TRAIN_LOSS_TAG:
          continue
        scalar = (tensor_util.make_ndarray(value.tensor) if value.HasField("tensor")
                  else value.simple_value)
        losses[int(event.step)] = float(scalar)
  return dict(sorted(losses.items()))


def teacher_indices(history: Sequence[dict[str, Any]]) -> list[int]:
  """The indices i of the teachers whose `teacher/<i>/test_accuracy` the history holds."""
  found = {int(match.group(1)) for point in history for key in point
           if (match := _TEACHER_KEY.fullmatch(key))}
  return sorted(found)


def curves_figure(history: Sequence[dict[str, Any]], losses: dict[int, float],
                  teacher_start: Sequence[float] = (), title: str = ""):
  """The matplotlib Figure of the curves; one panel per kind of data present.

  Args:
    history: `summary.json`'s history: per evaluation {'step', 'epoch', 'test/accuracy', ...}.
    losses: {step: train loss} (`train_loss`); empty leaves the train-loss panel out.
    teacher_start: each teacher's test accuracy before step 0 (`teacher_test_accuracy`),
      drawn at epoch 0 for the teachers that train.
    title: the figure's title.
  """
  # pylint: disable=g-import-not-at-top
  from matplotlib import figure
  from matplotlib.backends import backend_agg
  teachers = teacher_indices(history)
  panels = ([TRAIN_LOSS_TITLE] if losses else []) + [ACCURACY_TITLE] + (
      [TEACHER_TITLE] if teachers else [])
  fig = figure.Figure(figsize=(4.5 * len(panels), 3.6), layout="constrained")
  backend_agg.FigureCanvasAgg(fig)  # Agg for this figure alone: pyplot's backend is untouched.
  axes = dict(zip(panels, fig.subplots(1, len(panels), squeeze=False)[0]))
  if losses:
    ax = axes[TRAIN_LOSS_TITLE]
    ax.plot(list(losses), list(losses.values()), label="train")
    ax.set(title=TRAIN_LOSS_TITLE, xlabel="step", ylabel="loss")
    if min(losses.values()) > 0:
      ax.set_yscale("log")
  ax = axes[ACCURACY_TITLE]
  for split in EVAL_SPLITS:
    points = [p for p in history if f"{split}/accuracy" in p]
    if points:
      ax.plot([p["epoch"] for p in points], [p[f"{split}/accuracy"] for p in points],
              marker=".", label=split)
  ax.set(title=ACCURACY_TITLE, xlabel="epoch", ylabel="top-1 accuracy")
  if ax.lines:
    ax.legend()
  if teachers:
    _draw_teachers(axes[TEACHER_TITLE], history, teachers, teacher_start)
  for ax in axes.values():
    ax.grid(alpha=0.3)
  if title:
    fig.suptitle(title)
  return fig


def _draw_teachers(ax, history: Sequence[dict[str, Any]], teachers: list[int],
                   teacher_start: Sequence[float]) -> None:
  distance_ax = ax.twinx()
  for i in teachers:
    points = [p for p in history if f"teacher/{i}/test_accuracy" in p]
    epochs = [p["epoch"] for p in points]
    accuracy = [p[f"teacher/{i}/test_accuracy"] for p in points]
    distance = [p[f"teacher/{i}/relative_distance"] for p in points]
    if i < len(teacher_start):
      epochs, accuracy, distance = [0.0] + epochs, [teacher_start[i]] + accuracy, [0.0] + distance
    line, = ax.plot(epochs, accuracy, marker=".", label=f"teacher {i} accuracy")
    distance_ax.plot(epochs, distance, linestyle="--", color=line.get_color(),
                     label=f"teacher {i} distance")
  ax.set(title=TEACHER_TITLE, xlabel="epoch", ylabel="test accuracy")
  distance_ax.set(ylabel="relative distance ‖θ − θ₀‖ / ‖θ₀‖")
  handles = ax.get_legend_handles_labels()
  more = distance_ax.get_legend_handles_labels()
  ax.legend(handles[0] + more[0], handles[1] + more[1], fontsize="small")


def write_curves(workdir: str) -> Optional[str]:
  """Draws `workdir/curves.png` from the run's `summary.json` and event files.

  Returns the path written; None on processes other than 0 (which write nothing) and where
  matplotlib is not installed (a warning says so).
  Raises FileNotFoundError when `workdir` holds no summary.json (the run has not finished).
  """
  if jax.process_index() != 0:
    return None
  try:
    importlib.import_module("matplotlib")
  except ImportError:
    logging.warning("matplotlib is not installed: no curves.png in %s (pip install "
                    "matplotlib==3.10.9 draws it).", workdir)
    return None
  summary = reporting.read_summary(workdir)
  if summary is None:
    raise FileNotFoundError(f"{os.path.join(workdir, reporting.SUMMARY_FILE)} does not exist: "
                            "curves are drawn from a finished run's workdir")
  fig = curves_figure(summary.get("history", []), train_loss(workdir),
                      summary.get("teacher_test_accuracy", []), _title(summary))
  path = os.path.join(workdir, CURVES_FILE)
  fig.savefig(path + ".tmp.png", dpi=100)
  os.replace(path + ".tmp.png", path)
  return path


def _title(summary: dict[str, Any]) -> str:
  """'kd: cnn_small from cnn_large on digits' from the summary's fields that are present."""
  method, student = summary.get("method"), summary.get("student_model")
  if not method or not student:
    return ""
  teacher = summary.get("teacher_model")
  source = f" from {teacher}" if teacher else ""
  dataset = summary.get("dataset")
  return f"{method}: {student}{source}" + (f" on {dataset}" if dataset else "")
