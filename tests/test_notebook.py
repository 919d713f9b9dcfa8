"""notebooks/quickstart.ipynb runs headless from its own folder, as Jupyter starts it."""

import os
import re

import pytest

NOTEBOOKS = os.path.join(os.path.dirname(__file__), "..", "notebooks")


def stream_text(notebook) -> str:
  """Everything the notebook's code cells printed."""
  return "".join(output.get("text", "") for cell in notebook.cells if cell.cell_type == "code"
                 for output in cell.get("outputs", []) if output.output_type == "stream")


@pytest.mark.slow
def test_quickstart_notebook_runs_from_its_folder(tmp_path, monkeypatch):
  # pylint: disable=g-import-not-at-top
  import nbformat
  from nbclient import NotebookClient
  monkeypatch.setenv("JAXKD_NOTEBOOK_WORKDIR", str(tmp_path / "quickstart"))
  monkeypatch.setenv("MPLCONFIGDIR", str(tmp_path / "matplotlib"))
  monkeypatch.delenv("XLA_FLAGS", raising=False)  # One CPU device, as on a laptop.
  notebook = nbformat.read(os.path.join(NOTEBOOKS, "quickstart.ipynb"), as_version=4)
  client = NotebookClient(notebook, timeout=300, kernel_name="python3",
                          resources={"metadata": {"path": os.path.abspath(NOTEBOOKS)}})
  client.execute()  # Raises CellExecutionError, with the cell's traceback, if a cell fails.
  printed = stream_text(notebook)
  assert re.search(r"kd student final test accuracy 0\.\d{4}, dkd student final test "
                   r"accuracy 0\.\d{4}", printed), printed[-2000:]
  assert "StaleRunError: stage(s) changed" in printed and "kd.temperature" in printed
  assert "stages run: ['student']" in printed  # The DKD student reuses the teacher.
  assert os.path.isfile(tmp_path / "quickstart" / "student" / "curves.png")
  assert not os.path.exists(tmp_path / "quickstart_dkd" / "teacher")
