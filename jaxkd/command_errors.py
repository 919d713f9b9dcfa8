"""How the small commands (`import_torch`, `export_torch`) end on a bad input: one line,
`<command>: <what to fix>`, on stderr, and exit status 1, never a traceback."""

import contextlib
import sys
from typing import Iterator

BAD_INPUT_ERRORS = (ValueError, FileNotFoundError, ImportError)


@contextlib.contextmanager
def exit_on_bad_input(command: str) -> Iterator[None]:
  """Runs the body; an error that says what to fix (`BAD_INPUT_ERRORS`) exits with it."""
  try:
    yield
  except BAD_INPUT_ERRORS as error:
    sys.exit(f"{command}: {error}")
