"""Runs chained as stages: teacher ▶ student, or standard ▶ generous teacher ▶ student.

A pipeline config (`config_schema.pipeline_config`) lists its stages in `stage_order`.
Each stage is an ordinary run in `WORKDIR/<stage>`, resumable on its own; a stage whose
`summary.json` shows it reached its last step (or `max_steps`) is skipped when the
pipeline is run again, unless its config or teacher changed since (its `fingerprint.json`).
A stage names an earlier stage's model as its teacher with `teacher_checkpoint='@<stage>'`
(several, comma-separated, for several teachers).

Before any stage trains, every stage's config is validated and checked against the run its
directory holds: a changed stage stops the pipeline with one line naming what changed,
unless `restart_stages` names it (or a stage it learns from), which retrains it.

Seeds (`--config.seeds=0,1,2` or `num_replicas`, shared by every stage) replicate the whole
chain: each stage trains its seeds together as replicas (`jaxkd.replicas`), and seed s of
a stage learns from seed s of the stage it names. `WORKDIR/seed_<s>/` holds what the single
pipeline run with seed s would write (`<stage>/` and `summary.json`), and `WORKDIR/<stage>/`
the summary of each stage's seeds together.
"""

import os
from typing import Any, Callable

import ml_collections
from absl import logging

from jaxkd import checkpoint, config_validation, replicas, reporting, run_lanes, run_record
from jaxkd.config_schema import split_names
from jaxkd.ranges import did_you_mean

# run(stage config, stage workdir, where each replica trains given its directory, how the
# command line names the stage's flags): summary.
RunFn = Callable[[ml_collections.ConfigDict, str, Callable[[str], str], run_lanes.CommandLine],
                 dict[str, Any]]
# What the pipeline's summary repeats of its last stage's (a single run's or, with seeds, the
# replicated run's).
LAST_STAGE_FIELDS = ("final_test_accuracy", "test_accuracy_at_best", "best_selected_by",
                     "best_step", "steps", "images_per_s", "method", "dataset", "finished",
                     "final_test_accuracy_mean", "final_test_accuracy_std",
                     "final_test_accuracy_count")


def stage_references(stage: ml_collections.ConfigDict) -> tuple[str, ...]:
  """The stages whose models `stage` uses as teachers ('@name' entries)."""
  return tuple(p[1:] for p in split_names(stage.teacher_checkpoint) if p.startswith("@"))


def root_stages(config: ml_collections.ConfigDict) -> tuple[str, ...]:
  """The stages that need no earlier stage: the ones a given teacher checkpoint replaces."""
  return tuple(n for n in config.stage_order if not stage_references(config.stages[n]))


def resolve_stage(config: ml_collections.ConfigDict, name: str,
                  workdir: str) -> ml_collections.ConfigDict:
  """Stage `name` of a pipeline, its '@stage' teacher references made into paths.

  A reference points at `workdir/<stage>` (at `workdir/seed_{seed}/<stage>` when the stages
  train several seeds: each replica completes it with its seed). When the pipeline's
  `teacher_checkpoint` is set, its comma-separated entries replace, in order, the
  references to root stages (those that train from scratch: the teachers); references to
  later stages stay.
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
  seed_part = ((replicas.seed_directory(replicas.SEED_PLACEHOLDER),)
               if replicas.asks_for_seeds(stage) else ())
  resolved.teacher_checkpoint = ",".join(
      next(given) if p in replaced
      else os.path.join(workdir, *seed_part, p[1:]) if p.startswith("@") else p
      for p in entries)
  return resolved


def stages_to_run(config: ml_collections.ConfigDict) -> tuple[str, ...]:
  """All stages, less the root stages that a top-level `teacher_checkpoint` replaces."""
  order = tuple(config.stage_order)
  unknown = [r for name in order for r in stage_references(config.stages[name]) if r not in order]
  if unknown:
    raise ValueError(f"teacher_checkpoint references unknown stage(s) {unknown}; "
                     f"stages: {', '.join(order)}{did_you_mean(unknown[0], order)}")
  if not config.teacher_checkpoint:
    return order
  return tuple(name for name in order if name not in root_stages(config))


def reached_stop(summary: dict[str, Any], max_steps: int) -> bool:
  """Whether a run with this summary went as far as a run with `max_steps` would go."""
  stop = min(summary["total_steps"], max_steps) if max_steps > 0 else summary["total_steps"]
  return summary["steps"] >= stop


def restart_set(config: ml_collections.ConfigDict) -> set[str]:
  """The stages `restart_stages` names, with every stage that learns from one of them."""
  named = set(split_names(config.restart_stages))
  unknown = named - set(config.stage_order)
  if unknown:
    raise ValueError(f"--config.restart_stages names unknown stage(s) {sorted(unknown)}; "
                     f"stages: {', '.join(config.stage_order)}"
                     f"{did_you_mean(min(unknown), config.stage_order)}")
  for name in config.stage_order:  # In order: a stage's teachers come before it.
    if set(stage_references(config.stages[name])) & named:
      named.add(name)
  return named


def validated_stages(config: ml_collections.ConfigDict,
                      workdir: str) -> dict[str, ml_collections.ConfigDict]:
  """`{name: resolved stage}` of every stage to run, each validated before any trains."""
  restart_set(config)  # Unknown stages to restart raise here.
  stages = {}
  for name in stages_to_run(config):
    stages[name] = resolve_stage(config, name, workdir)
    try:
      config_validation.validate(stages[name])
      if stages[name].sweep.strip():
        raise ValueError("a sweep trains a single run's settings: run the stage's config on "
                         "its own, with --config.teacher_checkpoint naming its teacher")
    except ValueError as error:
      raise ValueError(f"stage '{name}': {error}") from None
  return stages


def stage_run_dir(workdir: str, name: str, replica_directory: str = "") -> str:
  """Where stage `name` trains: `workdir/<stage>`, or `workdir/seed_<s>/<stage>` for its
  replica of seed s (`replica_directory` 'seed_<s>')."""
  return os.path.join(workdir, replica_directory, name)


def _source_stage(path: str, workdir: str) -> str | None:
  """The stage whose run `path` is (`workdir/<stage>` or one of its seeds'), else None."""
  parts = os.path.relpath(path, workdir).split(os.sep)
  if parts[0] == os.pardir or len(parts) > 2:
    return None
  if len(parts) == 2 and not parts[0].startswith(replicas.seed_directory("")):
    return None
  return parts[-1]


def _expected_inputs(run: ml_collections.ConfigDict, recorded: dict, workdir: str,
                     training: set[str]) -> dict[str, Any]:
  """The input fingerprints a stage's run (resolved; one replica's) will see: its recorded
  ones, with each teacher that is an earlier stage replaced by that stage's export now, or
  marked as retrained when that stage trains in this run."""
  inputs = dict(recorded["inputs"])
  for i, path in enumerate(split_names(run.teacher_checkpoint)):
    source = _source_stage(path, workdir)
    if source is None:
      continue  # A given checkpoint, not a stage's: checked when the stage starts.
    if source in training:
      inputs[f"teacher {i}"] = {"sha256": None, "step": f"(stage '{source}' trains first)"}
    elif os.path.exists(os.path.join(path, checkpoint.EXPORT_DIR)):
      inputs[f"teacher {i}"] = run_record.export_fingerprint(path)
  return inputs


def _plan(stages: dict[str, ml_collections.ConfigDict], workdir: str,
          restart: set[str]) -> set[str]:
  """The stages to train (the others are finished and unchanged); raises StaleRunError naming
  every changed stage that `restart` does not retrain."""
  training, stale = set(), {}
  for name, stage in stages.items():
    for replica, run in replicas.single_runs(stage):
      run_dir = stage_run_dir(workdir, name, replica.directory)
      recorded = run_record.read_record(run_dir)
      changes = []
      if recorded and checkpoint.has_results(run_dir):
        expected = {"config": run_record.config_fingerprint(run),
                    "inputs": _expected_inputs(run, recorded, workdir, training)}
        changes = run_record.record_changes(recorded, expected)
        if changes and name not in restart and recorded["diverged_at_step"] is None:
          stale[(name, replica.directory)] = "; ".join(changes)
      previous = reporting.read_summary(run_dir)
      if changes or not (previous and reached_stop(previous, run.max_steps)):
        training.add(name)
    if reporting.read_summary(os.path.join(workdir, name)) is None:
      training.add(name)  # Its replicas finished, but not the summary of them all.
  if stale:
    raise run_record.StaleRunError(
        f"stage(s) changed since they ran in {workdir}: "
        + ", ".join(f"'{name}'{f' ({directory})' if directory else ''} ({changes})"
                    for (name, directory), changes in stale.items())
        + "; use a new --workdir, or --config.restart_stages="
        + ",".join(dict.fromkeys(name for name, _ in stale)) + " to retrain "
        "them (their old runs are moved aside)")
  return training


def run_stages(config: ml_collections.ConfigDict, workdir: str, run: RunFn) -> dict[str, Any]:
  """Runs every stage not yet finished, in order; returns (and writes) the pipeline summary.

  The pipeline's summary carries the last stage's accuracy fields at the top level and
  every stage's summary, with the config its results came from, under `stages`.
  """
  stages = validated_stages(config, workdir)
  restart = restart_set(config)
  training = _plan(stages, workdir, restart)
  summaries = {}
  for name, stage in stages.items():
    stage_dir = os.path.join(workdir, name)
    if name not in training:
      logging.info("Stage '%s' already finished in %s: skipped.", name, stage_dir)
      summaries[name] = reporting.read_summary(stage_dir)
      continue
    logging.info("Stage '%s' starts in %s.", name, stage_dir)
    os.makedirs(stage_dir, exist_ok=True)
    if name in restart:
      stage.restart_stages = "run"
    summaries[name] = run(stage, stage_dir,
                          lambda directory, name=name: stage_run_dir(workdir, name, directory),
                          run_lanes.CommandLine(f"config.stages.{name}", name))
  summary = _pipeline_summary(summaries, config.to_dict())
  reporting.write_summary(workdir, summary)
  if replicas.asks_for_seeds(config):
    for directory, seed_summary in _seed_summaries(summaries, config).items():
      reporting.write_summary(os.path.join(workdir, directory), seed_summary)
  return summary


def _pipeline_summary(summaries: dict[str, dict[str, Any]],
                      config: dict[str, Any]) -> dict[str, Any]:
  """The summary of a pipeline whose stages have `summaries`."""
  last = summaries[next(reversed(summaries))]
  summary = {key: last[key] for key in LAST_STAGE_FIELDS if key in last}
  summary["wall_time_s"] = sum(s["wall_time_s"] for s in summaries.values())
  summary["stages"] = summaries
  summary["config"] = config
  return summary


def _seed_summaries(summaries: dict[str, dict[str, Any]],
                    config: ml_collections.ConfigDict) -> dict[str, dict[str, Any]]:
  """`{seed_<s>: the summary the single pipeline run with seed s writes}` of a pipeline that
  trained its stages' seeds as replicas (`summaries`: the stages' replicated summaries)."""
  last = summaries[next(reversed(summaries))]
  seed_summaries = {}
  for directory, replica in last["replicas"].items():
    single = config.to_dict()
    for part in (single, *single["stages"].values()):
      part.update(seed=replica["seed"], seeds="", num_replicas=1)
    seed_summaries[directory] = _pipeline_summary(
        {name: stage["replicas"][directory] for name, stage in summaries.items()}, single)
  return seed_summaries
