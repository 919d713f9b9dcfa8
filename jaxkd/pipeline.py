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


def resolve_stage(stage: ml_collections.ConfigDict, workdir: str,
                  teacher_override: str) -> ml_collections.ConfigDict:
  """A copy of `stage` whose '@name' teacher references point at stage workdirs.

  A non-empty `teacher_override` (the pipeline's `teacher_checkpoint`) replaces the
  references instead, one comma-separated entry per reference, in order.
  """
  resolved = stage.copy_and_resolve_references()
  references = [p for p in split_names(stage.teacher_checkpoint) if p.startswith("@")]
  if not references:
    return resolved
  overrides = iter(split_names(teacher_override))
  if teacher_override and len(split_names(teacher_override)) != len(references):
    raise ValueError(f"--config.teacher_checkpoint gives {len(split_names(teacher_override))} "
                     f"checkpoint(s) for the {len(references)} teacher stage(s) "
                     f"{', '.join(references)}: give one per teacher, comma-separated")
  paths = [(next(overrides) if teacher_override else os.path.join(workdir, p[1:]))
           if p.startswith("@") else p for p in split_names(stage.teacher_checkpoint)]
  resolved.teacher_checkpoint = ",".join(paths)
  return resolved


def stages_to_run(config: ml_collections.ConfigDict) -> tuple[str, ...]:
  """All stages, less those replaced by a top-level `teacher_checkpoint`."""
  order = tuple(config.stage_order)
  unknown = [r for name in order for r in stage_references(config.stages[name]) if r not in order]
  if unknown:
    raise ValueError(f"teacher_checkpoint references unknown stage(s) {unknown}; "
                     f"stages: {', '.join(order)}")
  if not config.teacher_checkpoint:
    return order
  replaced = {r for name in order for r in stage_references(config.stages[name])}
  return tuple(name for name in order if name not in replaced)


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
    summaries[name] = run(resolve_stage(config.stages[name], workdir, config.teacher_checkpoint),
                          stage_dir)
  last = summaries[next(reversed(summaries))]
  summary = {key: last[key] for key in ("final_eval_accuracy", "best_eval_accuracy", "steps",
                                        "images_per_s", "method", "dataset", "finished")}
  summary["wall_time_s"] = sum(s["wall_time_s"] for s in summaries.values())
  summary["stages"] = {name: {k: v for k, v in s.items() if k != "config"}
                       for name, s in summaries.items()}
  summary["config"] = config.to_dict()
  reporting.write_summary(workdir, summary)
  return summary
