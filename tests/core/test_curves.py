"""curves.png from a synthetic finished run: the file, its panels and the data they plot."""

import json

import numpy as np
import pytest

from jaxkd import curves, reporting

HISTORY = [
    {"step": 10, "epoch": 1.0, "test/accuracy": 0.5, "test/loss": 1.5,
     "validation/accuracy": 0.45, "validation/loss": 1.6,
     "teacher/0/test_accuracy": 0.70, "teacher/0/relative_distance": 0.01},
    {"step": 20, "epoch": 2.0, "test/accuracy": 0.6, "test/loss": 1.2,
     "validation/accuracy": 0.55, "validation/loss": 1.3,
     "teacher/0/test_accuracy": 0.72, "teacher/0/relative_distance": 0.02},
]
LOSSES = {5: 2.0, 10: 1.5, 15: 1.25, 20: 1.0}
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def write_run(workdir, history=HISTORY, losses=LOSSES, teacher_start=(0.68,)):
  """A workdir as a finished run leaves it: summary.json, and event files when `losses`."""
  workdir.mkdir(exist_ok=True)
  (workdir / reporting.SUMMARY_FILE).write_text(json.dumps(
      {"history": history, "teacher_test_accuracy": list(teacher_start)}))
  if losses:
    from clu import metric_writers  # pylint: disable=g-import-not-at-top
    writer = metric_writers.create_default_writer(str(workdir))
    for step, loss in losses.items():
      writer.write_scalars(step, {curves.TRAIN_LOSS_TAG: loss, "perf/images_per_s": 100.0})
    writer.close()
  return str(workdir)


def panels(fig):
  """{title: axes} of the titled panels (the teacher panel's twin axis has no title)."""
  return {ax.get_title(): ax for ax in fig.axes if ax.get_title()}


def test_write_curves_writes_a_png_with_every_panel(tmp_path):
  workdir = write_run(tmp_path / "run")
  path = curves.write_curves(workdir)
  assert path == str(tmp_path / "run" / curves.CURVES_FILE)
  data = open(path, "rb").read()
  assert data.startswith(PNG_SIGNATURE) and len(data) > 1000
  assert curves.train_loss(workdir) == pytest.approx(LOSSES)


def test_panels_plot_the_history_and_the_train_loss():
  fig = curves.curves_figure(HISTORY, LOSSES, teacher_start=(0.68,), title="atsc: r8 from r32")
  assert fig.get_suptitle() == "atsc: r8 from r32"
  found = panels(fig)
  assert list(found) == [curves.TRAIN_LOSS_TITLE, curves.ACCURACY_TITLE, curves.TEACHER_TITLE]

  loss_ax = found[curves.TRAIN_LOSS_TITLE]
  assert (loss_ax.get_xlabel(), loss_ax.get_ylabel()) == ("step", "loss")
  (line,) = loss_ax.lines
  np.testing.assert_allclose(line.get_xdata(), list(LOSSES))
  np.testing.assert_allclose(line.get_ydata(), list(LOSSES.values()))

  accuracy_ax = found[curves.ACCURACY_TITLE]
  assert accuracy_ax.get_xlabel() == "epoch"
  lines = {line.get_label(): line for line in accuracy_ax.lines}
  assert set(lines) == {"test", "validation"}
  for split, line in lines.items():
    np.testing.assert_allclose(line.get_xdata(), [1.0, 2.0])
    np.testing.assert_allclose(line.get_ydata(), [p[f"{split}/accuracy"] for p in HISTORY])

  teacher_ax = found[curves.TEACHER_TITLE]
  (accuracy_line,) = teacher_ax.lines
  np.testing.assert_allclose(accuracy_line.get_xdata(), [0.0, 1.0, 2.0])
  np.testing.assert_allclose(accuracy_line.get_ydata(), [0.68, 0.70, 0.72])
  (distance_ax,) = [ax for ax in fig.axes if ax is not teacher_ax and ax.bbox.bounds ==
                    teacher_ax.bbox.bounds]
  (distance_line,) = distance_ax.lines
  np.testing.assert_allclose(distance_line.get_ydata(), [0.0, 0.01, 0.02])


def test_a_run_without_event_files_or_teacher_gets_the_accuracy_panel_alone(tmp_path):
  history = [{k: v for k, v in point.items() if not k.startswith(("teacher", "validation"))}
             for point in HISTORY]
  workdir = write_run(tmp_path / "run", history=history, losses={}, teacher_start=())
  assert curves.train_loss(workdir) == {}
  fig = curves.curves_figure(history, {})
  assert list(panels(fig)) == [curves.ACCURACY_TITLE]
  assert [line.get_label() for line in panels(fig)[curves.ACCURACY_TITLE].lines] == ["test"]
  assert open(curves.write_curves(workdir), "rb").read().startswith(PNG_SIGNATURE)


def test_a_resumed_run_keeps_the_later_loss_at_a_repeated_step(tmp_path):
  workdir = write_run(tmp_path / "run", losses={10: 2.0, 20: 1.8})
  write_run(tmp_path / "run", losses={20: 1.5, 30: 1.2})  # Resumed from step 10.
  assert curves.train_loss(workdir) == pytest.approx({10: 2.0, 20: 1.5, 30: 1.2})


def test_an_unfinished_run_is_one_clear_error(tmp_path):
  with pytest.raises(FileNotFoundError, match="summary.json does not exist"):
    curves.write_curves(str(tmp_path))
