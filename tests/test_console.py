"""The console filter: jaxkd's own log lines and every library's warnings, nothing else."""

import logging
import os

import jaxkd
from jaxkd import console


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
