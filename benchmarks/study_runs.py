"""A study's runs: which there are, which a shard takes, which are done, and training the rest.

Run (label, seed) lives in WORKDIR/<label>/seed_<seed>. The runs are ordered seed by seed
(every method's seed 0 first), and shard i/n takes every n-th of them from the i-th, so
shards on different machines share the work and any early results cover all methods. A run
is done when its summary.json shows that it reached the step its config stops at (every
stage, for a pipeline); `train_and_evaluate` resumes an unfinished one from its checkpoint.
"""

import contextlib
import dataclasses
import os
import time
from typing import Any, Callable, Iterable, Mapping, Sequence

import jax
import ml_collections

from jaxkd import config_schema, pipeline, reporting, train, workdir_lock

Summary = dict[str, Any]


@dataclasses.dataclass(frozen=True)
class StudyRun:
  """One (method label, seed) run and its workdir."""
  label: str
  seed: int
  workdir: str


def run_dir(workdir: str, label: str, seed: int) -> str:
  return os.path.join(workdir, label, f"seed_{seed}")


def plan_runs(workdir: str, labels: Sequence[str], seeds: Sequence[int]) -> list[StudyRun]:
  """Every (label, seed) run, seed by seed, each label in suite order within a seed."""
  return [StudyRun(label, seed, run_dir(workdir, label, seed)) for seed in seeds
          for label in labels]


def parse_shard(text: str) -> tuple[int, int]:
  """'i/n' → (i, n), with 0 ≤ i < n."""
  try:
    index, count = (int(part) for part in text.split("/"))
  except ValueError:
    raise ValueError(f"--shard '{text}' must be i/n, e.g. 0/2 and 1/2 for two machines") from None
  if not 0 <= index < count:
    raise ValueError(f"--shard {text}: i must be between 0 and n − 1 = {count - 1}")
  return index, count


def shard_runs(runs: Sequence[StudyRun], index: int, count: int) -> list[StudyRun]:
  """Every `count`-th run from the `index`-th: shards 0..count−1 partition `runs`."""
  return list(runs[index::count])


def _parts(summary: Summary, config: ml_collections.ConfigDict
           ) -> list[tuple[Summary | None, ml_collections.ConfigDict]]:
  """(summary, config) of each run of a run or of a pipeline's stages."""
  if not config_schema.is_pipeline(config):
    return [(summary, config)]
  stages = summary.get("stages", {})
  return [(stages.get(name), config.stages[name]) for name in config.stage_order]


def _stop_step(part: Summary, config: ml_collections.ConfigDict) -> int:
  total = part["total_steps"]
  return min(total, config.max_steps) if config.max_steps > 0 else total


def is_done(summary: Summary | None, config: ml_collections.ConfigDict) -> bool:
  """Whether every run of `config` went as far as it would go (further is done too)."""
  return summary is not None and all(
      part is not None and pipeline.reached_stop(part, stage.max_steps)
      for part, stage in _parts(summary, config))


def run_is_done(run: StudyRun, config: ml_collections.ConfigDict) -> bool:
  """`is_done` of the summary in the run's workdir."""
  return is_done(reporting.read_summary(run.workdir), config)


def matches_config(summary: Summary | None, config: ml_collections.ConfigDict) -> bool:
  """Whether `summary` is a result of `config`'s budget: every run stopped exactly where
  `config` stops (so a table never mixes runs of different lengths)."""
  return summary is not None and all(
      part is not None and part["steps"] == _stop_step(part, stage)
      for part, stage in _parts(summary, config))


def format_duration(seconds: float) -> str:
  """'42 s', '3.5 min' or '2.1 h'."""
  if seconds < 90:
    return f"{seconds:.0f} s"
  if seconds < 90 * 60:
    return f"{seconds / 60:.1f} min"
  return f"{seconds / 3600:.1f} h"


class SuiteEta:
  """The remaining wall time of a suite, from the runs finished so far.

  With estimates per label, the remaining runs' estimates are scaled by how the finished
  runs compared with theirs; without, each remaining run takes the finished runs' mean.
  """

  def __init__(self, estimates: Mapping[str, float] | None = None):
    self._estimates = estimates or {}
    self._actual = 0.0
    self._estimated = 0.0
    self._count = 0

  def record(self, label: str, seconds: float) -> None:
    self._actual += seconds
    self._estimated += self._estimates.get(label, 0.0)
    self._count += 1

  def remaining(self, labels: Iterable[str]) -> float:
    labels = list(labels)
    if not self._count:
      return sum(self._estimates.get(label, 0.0) for label in labels)
    if self._estimates and self._estimated > 0:
      return self._actual / self._estimated * sum(self._estimates[label] for label in labels)
    return self._actual / self._count * len(labels)


def _accuracy(value: float | None) -> str:
  return "—" if value is None else f"{100 * value:.2f}%"


def replica_groups(runs: Sequence[StudyRun],
                   config_of: Callable[[StudyRun], ml_collections.ConfigDict],
                   size: int) -> list[list[StudyRun]]:
  """`runs` in groups that train together as replicas (`jaxkd.replicas`): up to `size` seeds of
  one label (everything one by one when `size` ≤ 1). A pipeline's group replicates its whole
  chain. The first run of each group keeps its place in the order."""
  if size <= 1:
    return [[run] for run in runs]
  groups, open_groups = [], {}
  for run in runs:
    group = open_groups.get(run.label)
    if group is None or len(group) == size:
      group = open_groups[run.label] = []
      groups.append(group)
    group.append(run)
  return groups


def _train_group(group: list[StudyRun],
                 config_of: Callable[[StudyRun], ml_collections.ConfigDict]) -> list[Summary]:
  """Trains a group's runs, as replicas of one run (or pipeline) when there are several; their
  summaries. Replica s writes what the run alone writes, to `<label>/seed_<s>` (`run_dir`).
  Each run's workdir is locked while it trains (`workdir_lock`)."""
  config = config_of(group[0])
  with contextlib.ExitStack() as locks:
    for run in group:
      os.makedirs(run.workdir, exist_ok=True)
      locks.enter_context(workdir_lock.hold(run.workdir, jax.process_index()))
    if len(group) == 1:
      train.train_and_evaluate(config, group[0].workdir)
    else:
      config.seeds = ",".join(str(run.seed) for run in group)
      train.train_and_evaluate(config, os.path.dirname(group[0].workdir))
  return [reporting.read_summary(run.workdir) for run in group]


def train_runs(runs: Sequence[StudyRun],
               config_of: Callable[[StudyRun], ml_collections.ConfigDict],
               estimates: Mapping[str, float] | None = None,
               log: Callable[[str], None] = print, replicas: int = 1,
               on_finished: Callable[[list[StudyRun]], None] | None = None) -> list[StudyRun]:
  """Trains the runs not yet done, one `train_and_evaluate` each (or up to `replicas` seeds of
  a label in one, `replica_groups`), printing a line (with the suite's ETA) as each finishes
  and calling `on_finished` with each group trained; returns the runs it trained."""
  pending = [run for run in runs if not run_is_done(run, config_of(run))]
  log(f"{len(runs) - len(pending)} of {len(runs)} run(s) already done; {len(pending)} to train.")
  eta = SuiteEta(estimates)
  groups = replica_groups(pending, config_of, replicas)
  ordered = [run for group in groups for run in group]
  number = 0
  for group in groups:
    started = time.time()
    summaries = _train_group(group, config_of)
    elapsed = time.time() - started
    if on_finished is not None:
      on_finished(group)
    together = f" (with {len(group) - 1} other seed(s) as replicas)" if len(group) > 1 else ""
    for run in group:
      eta.record(run.label, elapsed / len(group))
    left = eta.remaining(r.label for r in ordered[number + len(group):])
    for run, summary in zip(group, summaries):
      number += 1
      log(f"[{number}/{len(pending)}] {run.label} seed {run.seed}: final test "
          f"{_accuracy(summary['final_test_accuracy'])}, test at best "
          f"{summary['best_selected_by']} {_accuracy(summary['test_accuracy_at_best'])}; "
          f"{format_duration(elapsed)}{together}; suite ETA {format_duration(left)}")
  return pending
