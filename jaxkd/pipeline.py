"""Runs chained as stages: teacher ▶ student, or standard ▶ generous teacher ▶ student.

A pipeline config (`config_schema.pipeline_config`) lists its stages in `stage_order`.
Each stage is an ordinary run in `WORKDIR/<stage>`, resumable on its own; a stage whose
`summary.json` shows it reached its last step (or `max_steps`) is skipped when the
pipeline is run again. A stage
names an earlier stage's model as its teacher with `teacher_checkpoint='@<stage>'`
(several, comma-separated, for several teachers).
"""

import os
from typing import Any, Callable

import ml_collections
from absl import logging

from jaxkd import reporting
from jaxkd.config_validation import split_names

RunFn = Callable[[ml_collections.ConfigDict, str], dict[str, Any]]


def stage_references(stage: ml_collections.ConfigDict) -> tuple[str, ...]:
  """The stages whose models `stage` uses as teachers ('@name' entries)."""
  return tuple(p[1:] for p in split_names(stage.teacher_checkpoint) if p.startswith("@"))


def root_stages(config: ml_collections.ConfigDict) -> tuple[str, ...]:
  """The stages that need no earlier stage: the ones a given teacher checkpoint replaces."""
  return tuple(n for n in config.stage_order if not stage_references(config.stages[n]))


def resolve_stage(config: ml_collections.ConfigDict, name: str,
                  workdir: str) -> ml_collections.ConfigDict:
  """Stage `name` of a pipeline, its '@stage' teacher references made into paths.

  A reference points at `workdir/<stage>`. When the pipeline's `teacher_checkpoint` is
  set, its comma-separated entries replace, in order, the references to root stages
  (those that train from scratch: the teachers); references to later stages stay.
  """
  stage = config.stages[name]
  resolved = stage.copy_and_resolve_references()
  entries = split_names(stage.teacher_checkpoint)
  if not any(p.startswith("@") for p in entries):
    return resolved
  roots = root_stages(config)
  overrides = split_names(config.teacher_checkpoint)
  replaced = [p for p in entries if p.startswith("@") and p[1:] in roots] if overrides else []
  if replaced and len(overrides) != len(replaced):
    raise ValueError(f"--config.teacher_checkpoint gives {len(overrides)} checkpoint(s) for "
                     f"the {len(replaced)} teacher stage(s) {', '.join(replaced)}: give one per "
                     "teacher, comma-separated")
  given = iter(overrides)
  resolved.teacher_checkpoint = ",".join(
      next(given) if p in replaced else os.path.join(workdir, p[1:]) if p.startswith("@") else p
      for p in entries)
  return resolved


def stages_to_run(config: ml_collections.ConfigDict) -> tuple[str, ...]:
  """All stages, less the root stages that a top-level `teacher_checkpoint` replaces."""
  order = tuple(config.stage_order)
  unknown = [r for name in order for r in stage_references(config.stages[name]) if r not in order]
  if unknown:
    raise ValueError(f"teacher_checkpoint references unknown stage(s) {unknown}; "
                     f"stages: {', '.join(order)}")
  if not config.teacher_checkpoint:
    return order
  return tuple(name for name in order if name not in root_stages(config))


def reached_stop(summary: dict[str, Any], max_steps: int) -> bool:
  """Whether a run with this summary went as far as a run with `max_steps` would go."""
  stop = min(summary["total_steps"], max_steps) if max_steps > 0 else summary["total_steps"]
  return summary["steps"] >= stop


def run_stages(config: ml_collections.ConfigDict, workdir: str, run: RunFn) -> dict[str, Any]:
  """Runs every stage not yet finished, in order; returns (and writes) the pipeline summary.

  The pipeline's summary carries the last stage's accuracy fields at the top level and
  every stage's summary under `stages`.
  """
  summaries = {}
  for name in stages_to_run(config):
    stage_dir = os.path.join(workdir, name)
    previous = reporting.read_summary(stage_dir)
    if previous and reached_stop(previous, config.stages[name].max_steps):
      logging.info("Stage '%s' already finished in %s: skipped.", name, stage_dir)
      summaries[name] = previous
      continue
    logging.info("Stage '%s' starts in %s.", name, stage_dir)
    os.makedirs(stage_dir, exist_ok=True)
    summaries[name] = run(resolve_stage(config, name, workdir), stage_dir)
  last = summaries[next(reversed(summaries))]
  summary = {key: last[key] for key in ("final_test_accuracy", "test_accuracy_at_best",
                                        "best_selected_by", "best_step", "steps",
                                        "images_per_s", "method", "dataset", "finished")}
  summary["wall_time_s"] = sum(s["wall_time_s"] for s in summaries.values())
  summary["stages"] = {name: {k: v for k, v in s.items() if k != "config"}
                       for name, s in summaries.items()}
  summary["config"] = config.to_dict()
  reporting.write_summary(workdir, summary)
  return summary
