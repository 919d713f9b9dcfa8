"""The models a study starts from, and their accuracies: the first rows of its table.

WORKDIR/teacher holds the suite's teacher: a PyTorch checkpoint imported once with
`jaxkd.import_torch` (an export that records the input normalisation it was trained with),
or the CE run the suite trains. WORKDIR/student_start holds the imported checkpoint the
student starts from, if any. Each is evaluated once through `jaxkd.evaluate` on the
test split; the result is kept in WORKDIR/references/<row>.json with the model's description.
"""

import dataclasses
import json
import os
import shutil
from typing import Callable

from jaxkd import checkpoint, data, import_torch, reporting, train
from jaxkd.evaluate import evaluate_checkpoint

from benchmarks import study_configs, study_runs, study_suite

TEACHER_DIR = "teacher"
STUDENT_START_DIR = "student_start"
REFERENCES_DIR = "references"
EXPORT_DESCRIPTION = "model.json"


@dataclasses.dataclass(frozen=True)
class Sources:
  """Where a study's teacher and starting student are (None: the student starts from scratch)."""
  teacher_dir: str
  student_start_dir: str | None


@dataclasses.dataclass(frozen=True)
class Reference:
  """A model the study evaluates but does not train: its row, its name and its accuracy."""
  row: str
  name: str
  accuracy: float
  count: int


def source_dirs(suite: study_suite.Suite, workdir: str) -> Sources:
  return Sources(os.path.join(workdir, TEACHER_DIR),
                 os.path.join(workdir, STUDENT_START_DIR) if suite.student_start else None)


def import_checkpoint(checkpoint: study_suite.ImportedCheckpoint, dataset: str, out_dir: str,
                      log: Callable[[str], None] = print) -> None:
  """Imports `checkpoint` (a model of `dataset`) into the export `out_dir` unless it is there.

  The import writes a directory of its own and renames it into place, so that shards
  started together never see a half-written export.
  """
  if os.path.exists(os.path.join(out_dir, EXPORT_DESCRIPTION)):
    return
  if not os.path.exists(checkpoint.path):
    raise FileNotFoundError(f"no checkpoint {checkpoint.path}: put it there, or point "
                            "$JAXKD_SHARED_TEACHERS at the directory that holds it")
  partial = f"{out_dir}.importing-{os.getpid()}"
  log(f"Importing {checkpoint.path} ({checkpoint.model}) into {out_dir}.")
  try:
    import_torch.import_checkpoint(checkpoint.model, data.dataset_info(dataset).num_classes,
                                   checkpoint.path, partial,
                                   checkpoint.mean, checkpoint.std, dataset)
  except BaseException:  # Leave nothing half-written behind, whatever stopped the import.
    shutil.rmtree(partial, ignore_errors=True)
    raise
  try:
    os.rename(partial, out_dir)
  except OSError:  # Another shard imported it first.
    shutil.rmtree(partial, ignore_errors=True)


def prepare_sources(suite: study_suite.Suite, workdir: str, settings: study_configs.RunSettings,
                    log: Callable[[str], None] = print) -> Sources:
  """Imports or trains the teacher and imports the starting student, each unless done."""
  sources = source_dirs(suite, workdir)
  if isinstance(suite.teacher, study_suite.TrainedTeacher):
    config = study_configs.teacher_config(suite, settings)
    if not study_runs.is_done(reporting.read_summary(sources.teacher_dir), config):
      log(f"Training the teacher {suite.teacher.model} (CE) in {sources.teacher_dir}.")
      train.train_and_evaluate(config, sources.teacher_dir)
  else:
    import_checkpoint(suite.teacher, suite.dataset, sources.teacher_dir, log)
  if suite.student_start:
    import_checkpoint(suite.student_start, suite.dataset, sources.student_start_dir, log)
  return sources


def _row_name(row: str, model: str, origin: str) -> str:
  return f"{'teacher' if row == study_suite.TEACHER_ROW else 'student start'} {model} ({origin})"


def _reference_models(suite: study_suite.Suite, sources: Sources) -> list[tuple[str, str, str]]:
  """(row, name, checkpoint dir) of the teacher and of the starting student."""
  teacher = suite.teacher
  origin = (os.path.basename(teacher.path) if isinstance(teacher, study_suite.ImportedCheckpoint)
            else "CE, trained by the suite")
  models = [(study_suite.TEACHER_ROW, _row_name(study_suite.TEACHER_ROW, teacher.model, origin),
             sources.teacher_dir)]
  if suite.student_start:
    start = suite.student_start
    models.append((study_suite.STUDENT_START_ROW,
                   _row_name(study_suite.STUDENT_START_ROW, start.model,
                             os.path.basename(start.path)), sources.student_start_dir))
  return models


def _evaluated(path: str, description: dict) -> dict | None:
  """The kept evaluation at `path`, if it is of the model `description` describes."""
  if not os.path.exists(path):
    return None
  with open(path) as f:
    kept = json.load(f)
  return kept if kept.pop("description", None) == description else None


def references(suite: study_suite.Suite, workdir: str,
               settings: study_configs.RunSettings) -> list[Reference]:
  """The test accuracy of the teacher and of the starting student, through jaxkd.

  Each is evaluated once and kept in WORKDIR/references (again when the model changed, e.g.
  a trained teacher trained further); a model not in `workdir` yet is left out.
  """
  rows = []
  eval_batch_size = study_configs.base_run(suite, settings).eval_batch_size
  for row, name, checkpoint_dir in _reference_models(suite, source_dirs(suite, workdir)):
    try:
      description = checkpoint.read_description(checkpoint_dir)
    except FileNotFoundError:
      continue
    path = os.path.join(workdir, REFERENCES_DIR, f"{row}.json")
    kept = _evaluated(path, description)
    if kept is None:
      result = evaluate_checkpoint(checkpoint_dir, dataset=suite.dataset,
                                   data_dir=settings.data_dir, batch_size=eval_batch_size)
      kept = {"row": row, "name": name, "accuracy": result["accuracy"], "count": result["count"]}
      os.makedirs(os.path.dirname(path), exist_ok=True)
      with open(path, "w") as f:
        json.dump({**kept, "description": description}, f, indent=2)
    rows.append(Reference(**kept))
  return rows
