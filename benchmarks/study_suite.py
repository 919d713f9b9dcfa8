"""What a multi-seed study is: a `Suite` declared in `benchmarks/suites/<name>.py`.

A suite names its data set, its teacher (a PyTorch checkpoint imported once, or a CE run
it trains), its student and where the student starts, the schedule every run shares (config
overrides), the methods as labelled entries, the seeds, and the published numbers for the
same pair. `load_suite(name)` returns `benchmarks.suites.<name>.get_suite()`, checked.
"""

import dataclasses
import importlib
import os
import pkgutil
import re
from typing import Any, Callable, Mapping

import ml_collections

from jaxkd import methods
from jaxkd.ranges import did_you_mean

# The teachers shared with this repository (../shared/teachers), unless $JAXKD_SHARED_TEACHERS.
SHARED_TEACHERS_DIR = os.environ.get(
    "JAXKD_SHARED_TEACHERS",
    os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                  "shared", "teachers")))
SUITES_PACKAGE = "benchmarks.suites"
LABEL_PATTERN = re.compile(r"^[a-z0-9_]+$")
# Reference rows of the table: models evaluated, not trained, by the study.
TEACHER_ROW = "teacher"
STUDENT_START_ROW = "student_start"


@dataclasses.dataclass(frozen=True)
class ImportedCheckpoint:
  """A PyTorch state_dict imported once with `jaxkd.import_torch` into the study's workdir.

  Attributes:
    path: the .pth file.
    model: its jaxkd zoo name.
    mean, std: the per-channel input normalisation it was trained with.
  """
  path: str
  model: str
  mean: tuple[float, ...]
  std: tuple[float, ...]


@dataclasses.dataclass(frozen=True)
class TrainedTeacher:
  """A teacher the study trains itself with CE, on the suite's schedule plus `overrides`."""
  model: str
  overrides: Mapping[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class TeacherStage:
  """A stage that trains a new teacher (of the suite teacher's architecture) from the one
  before it, e.g. Generous Teacher; the entry's method then distils from the last one.
  `overrides` are config fields of this stage over the suite's schedule (its optimizer, say;
  fields a pipeline shares with its stages, such as num_epochs, stay the suite's)."""
  name: str
  method: str
  settings: Mapping[str, Any] = dataclasses.field(default_factory=dict)
  overrides: Mapping[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class MethodEntry:
  """One row of the study: a method with its settings, run once per seed.

  Attributes:
    label: the row's name and its workdir (lower case, digits, '_').
    method: the method that trains the student.
    settings: values for the method's config section (over its defaults).
    teacher_stages: stages run before the student's, each distilling a new teacher.
    configure: an optional function applied to the config of the student's run (e.g.
      `atsc.share_student_optimizer`).
    ours: the reconstruction choices of this row that no paper made ('' = none).
  """
  label: str
  method: str
  settings: Mapping[str, Any] = dataclasses.field(default_factory=dict)
  teacher_stages: tuple[TeacherStage, ...] = ()
  configure: Callable[[ml_collections.ConfigDict], Any] | None = None
  ours: str = ""

  @property
  def chain(self) -> str:
    """The methods of the row's stages in order, e.g. 'generous ▶ kd'."""
    return " ▶ ".join([*(stage.method for stage in self.teacher_stages), self.method])


@dataclasses.dataclass(frozen=True)
class Published:
  """A published accuracy (%) for a row (a method label, TEACHER_ROW or STUDENT_START_ROW)."""
  row: str
  accuracy: float
  citation: str


@dataclasses.dataclass(frozen=True)
class Suite:
  """A multi-seed study.

  Attributes:
    name: the suite's module name under benchmarks/suites.
    purpose: one line, the heading of its STUDY.md section.
    dataset: the TFDS data set.
    teacher: an imported checkpoint or a CE run the suite trains.
    student_model: the zoo name of every method's student.
    student_start: the checkpoint the student starts from; None: from scratch.
    schedule: config overrides every run shares ('optimizer.learning_rate': 0.05, ...).
    methods: the rows, in table order.
    seeds: the seeds every row runs with.
    published: published numbers for the same pair (only those in docs/methods.md).
    notes: paragraphs printed under the heading of the STUDY.md section.
    long: print the estimated wall time before training starts.
  """
  name: str
  purpose: str
  dataset: str
  teacher: ImportedCheckpoint | TrainedTeacher
  student_model: str
  schedule: Mapping[str, Any]
  methods: tuple[MethodEntry, ...]
  seeds: tuple[int, ...]
  student_start: ImportedCheckpoint | None = None
  published: tuple[Published, ...] = ()
  notes: tuple[str, ...] = ()
  long: bool = False

  def entry(self, label: str) -> MethodEntry:
    for entry in self.methods:
      if entry.label == label:
        return entry
    raise KeyError(f"suite '{self.name}' has no method '{label}'; its methods: "
                   f"{', '.join(self.labels)}")

  @property
  def labels(self) -> tuple[str, ...]:
    return tuple(entry.label for entry in self.methods)

  def published_for(self, row: str) -> Published | None:
    return next((p for p in self.published if p.row == row), None)


def _check_settings(suite: Suite, entry_label: str, method: str,
                    settings: Mapping[str, Any]) -> None:
  known = methods.default_config(method)
  unknown = sorted(set(settings) - set(known))
  if unknown:
    raise ValueError(f"suite '{suite.name}', method '{entry_label}': '{method}' has no "
                     f"setting(s) {', '.join(unknown)}; its settings: {', '.join(sorted(known))}")


def check_suite(suite: Suite) -> Suite:
  """`suite`, or a ValueError saying what to fix in its file."""
  labels = suite.labels
  for label in labels:
    if not LABEL_PATTERN.match(label):
      raise ValueError(f"suite '{suite.name}': label '{label}' must be lower case letters, "
                       "digits and '_' (it names the run's workdir)")
  duplicates = sorted({label for label in labels if labels.count(label) > 1})
  if duplicates:
    raise ValueError(f"suite '{suite.name}': labels {', '.join(duplicates)} appear twice")
  for entry in suite.methods:
    _check_settings(suite, entry.label, entry.method, entry.settings)
    for stage in entry.teacher_stages:
      _check_settings(suite, entry.label, stage.method, stage.settings)
  rows = {*labels, TEACHER_ROW, STUDENT_START_ROW}
  for published in suite.published:
    if published.row not in rows:
      raise ValueError(f"suite '{suite.name}': published number for unknown row "
                       f"'{published.row}'; rows: {', '.join(sorted(rows))}")
  if not suite.seeds:
    raise ValueError(f"suite '{suite.name}' has no seeds")
  return suite


def suite_names() -> tuple[str, ...]:
  """The suites under benchmarks/suites (modules whose names do not start with '_')."""
  package = importlib.import_module(SUITES_PACKAGE)
  return tuple(sorted(m.name for m in pkgutil.iter_modules(package.__path__)
                      if not m.name.startswith("_")))


def load_suite(name: str) -> Suite:
  """The checked suite of `benchmarks/suites/<name>.py`."""
  if name not in suite_names():
    raise ValueError(f"no suite '{name}'; suites: {', '.join(suite_names())}"
                     f"{did_you_mean(name, suite_names())}")
  suite = importlib.import_module(f"{SUITES_PACKAGE}.{name}").get_suite()
  if suite.name != name:
    raise ValueError(f"benchmarks/suites/{name}.py returns a suite named '{suite.name}': "
                     f"name it '{name}'")
  return check_suite(suite)
