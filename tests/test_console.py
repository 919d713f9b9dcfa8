"""The console: jaxkd's own log lines and every library's warnings, no progress bars."""

import logging
import os

import jaxkd
from jaxkd import console
from jaxkd import main as cli
from tests.data.test_imagefolder import DEFAULT_CONFIG, make_folder


def record(pathname: str, level: int) -> logging.LogRecord:
  return logging.LogRecord("absl", level, pathname, 1, "message", None, None)


def test_own_lines_and_warnings_pass_library_info_does_not():
  keep = console._OwnLinesOnly()  # pylint: disable=protected-access
  package = os.path.dirname(jaxkd.__file__)
  assert keep.filter(record(os.path.join(package, "train.py"), logging.INFO))
  assert keep.filter(record(os.path.join(package, "data", "prepare.py"), logging.INFO))
  assert not keep.filter(record("/site-packages/orbax/checkpoint/manager.py", logging.INFO))
  assert keep.filter(record("/site-packages/orbax/checkpoint/manager.py", logging.WARNING))
  assert not keep.filter(record(package + "_plugin/module.py", logging.INFO))


def test_preparing_an_image_folder_prints_no_progress_bars(tmp_path, capfd):
  make_folder(tmp_path / "images")
  argv = ["jaxkd.main", f"--config={DEFAULT_CONFIG}", f"--workdir={tmp_path / 'work'}",
          f"--config.dataset=imagefolder:{tmp_path / 'images'}",
          f"--config.data_dir={tmp_path / 'data'}", "--config.student_model=cnn_small"]
  assert cli.command_line_error(argv) == ""  # What `python -m jaxkd.main` checks: it prepares.
  printed = "".join(capfd.readouterr())
  assert os.listdir(tmp_path / "data")
  for progress_text in ("examples/s", "splits/s", "%|", "Downloading and preparing"):
    assert progress_text not in printed
