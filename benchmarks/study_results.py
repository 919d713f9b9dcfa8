"""A study's results, read back from every run workdir present: one row per method label.

Runs are merged from all WORKDIR/<label>/seed_* directories (whichever shard or machine
trained them); a run counts only when it stopped exactly where the current schedule stops,
so a row never mixes runs of different lengths.
"""

import dataclasses
import os
import re
from typing import Any

from jaxkd import reporting

from benchmarks import study_configs, study_runs, study_sources, study_suite

Summary = dict[str, Any]
SEED_DIR = re.compile(r"^seed_(\d+)$")


@dataclasses.dataclass(frozen=True)
class SeedResult:
  """One finished run: its seed, the summary of the run that trained the student (the last
  stage of a pipeline), the summaries of its teacher stages, and its share of the wall time
  (`share_seconds`)."""
  seed: int
  student: Summary
  teacher_stages: dict[str, Summary]
  wall_time_s: float


@dataclasses.dataclass(frozen=True)
class MethodResult:
  """A method label's runs, by seed."""
  entry: study_suite.MethodEntry
  seeds: tuple[SeedResult, ...]

  def values(self, key: str, stage: str | None = None) -> list[float]:
    """`key` of each seed's student summary (or of its teacher stage `stage`)."""
    return [(s.teacher_stages[stage] if stage else s.student)[key] for s in self.seeds]

  def histories(self) -> list[list[dict[str, float]]]:
    return [s.student["history"] for s in self.seeds]


def replicas_together(summary: Summary) -> int:
  """How many replicas trained together in the run of `summary` (1: a run alone)."""
  return summary.get("replicas_trained_together", 1)


def share_seconds(summary: Summary) -> float:
  """A run's share of the wall time it trained in: the wall time of its run divided among
  the replicas trained together in it (`jaxkd.replicas`), summed over a pipeline's stages."""
  if "stages" in summary:
    return sum(share_seconds(stage) for stage in summary["stages"].values())
  return summary["wall_time_s"] / replicas_together(summary)


def _seed_result(seed: int, summary: Summary, entry: study_suite.MethodEntry) -> SeedResult:
  if not entry.teacher_stages:
    return SeedResult(seed, summary, {}, share_seconds(summary))
  stages = summary["stages"]
  return SeedResult(seed, stages[study_configs.STUDENT_STAGE],
                    {stage.name: stages[stage.name] for stage in entry.teacher_stages},
                    share_seconds(summary))


def _seeds_present(workdir: str, label: str) -> list[int]:
  directory = os.path.join(workdir, label)
  if not os.path.isdir(directory):
    return []
  matches = (SEED_DIR.match(name) for name in os.listdir(directory))
  return sorted(int(match.group(1)) for match in matches if match)


def gather(suite: study_suite.Suite, workdir: str,
           settings: study_configs.RunSettings) -> list[MethodResult]:
  """Every method of `suite` with its finished runs in `workdir` (methods without are left out)."""
  sources = study_sources.source_dirs(suite, workdir)
  results = []
  for entry in suite.methods:
    seeds = []
    for seed in _seeds_present(workdir, entry.label):
      summary = reporting.read_summary(study_runs.run_dir(workdir, entry.label, seed))
      config = study_configs.run_config(suite, entry, seed, sources.teacher_dir,
                                        sources.student_start_dir, settings)
      if study_runs.matches_config(summary, config):
        seeds.append(_seed_result(seed, summary, entry))
    if seeds:
      results.append(MethodResult(entry, tuple(seeds)))
  return results


def teacher_training_seconds(suite: study_suite.Suite, workdir: str) -> float:
  """Wall time of the teacher run a suite trains itself (0 for an imported teacher)."""
  if not isinstance(suite.teacher, study_suite.TrainedTeacher):
    return 0.0
  summary = reporting.read_summary(study_sources.source_dirs(suite, workdir).teacher_dir)
  return summary["wall_time_s"] if summary else 0.0


def hardware(results: list[MethodResult]) -> list[str]:
  """The distinct machines the runs trained on."""
  return sorted({s.student["hardware"] for result in results for s in result.seeds})
