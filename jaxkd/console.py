"""What a run prints: jaxkd's own lines by default, every library's with --verbosity=1.

Orbax, TFDS and clu log each checkpoint, file and metric at INFO level (over 700 of the
quickstart's lines). `show_own_lines_only()` keeps, on the absl handler, the records that
jaxkd itself logs (stage banners, progress with ETA, evaluations, the final table) and any
library's warnings and errors. TensorFlow's C++ INFO lines are silenced before it loads.
"""

import logging
import os

from absl import logging as absl_logging

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


class _OwnLinesOnly(logging.Filter):
  """Passes jaxkd's records and every library's warnings and errors."""

  def filter(self, record: logging.LogRecord) -> bool:
    return record.levelno >= logging.WARNING or record.pathname.startswith(_PACKAGE_DIR)


def quiet_native_logs() -> None:
  """TensorFlow's C++ logging at WARNING and above (set before TensorFlow is imported)."""
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def show_own_lines_only(verbosity: int) -> None:
  """At verbosity < 1, the absl handler shows jaxkd's lines and other libraries' warnings."""
  if verbosity < 1:
    absl_logging.get_absl_handler().addFilter(_OwnLinesOnly())
