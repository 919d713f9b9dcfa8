"""Several runs of one config, trained together: seeds (`config.num_replicas`,
`config.seeds`) and settings (`config.sweep`).

A replicated run trains S independent runs of one config in one jit-compiled step: the step
is `jax.vmap`ped over a leading replica axis of the state (parameters, optimizer states,
batch statistics, method state, RNG), and of the batch when the replicas' seeds differ;
each replica draws its own data order and augmentation from its own seed. A frozen teacher
is shared (one copy, not mapped); a teacher that trains is replicated.

The replicas differ in their seed, or in settings of the method that its loss only does
arithmetic with (`Method.traced_settings`: temperatures, loss weights), which the step
takes as traced values, one per replica: `--config.sweep='kd.temperature=2,4,8'` trains
three runs at T = 2, 4, 8 (several settings, separated by ';', take their k-th values
together). With seeds as well, every setting runs with every seed.

Replica k is the single run it stands for: it starts from the same variables, sees the same
batches, and writes what that run would write (checkpoints, export, summary.json,
fingerprint.json) to its own directory under the workdir (`Replica.directory`:
`seed_<s>`, `temperature_4`, `temperature_4/seed_<s>`), so that each replica can be
resumed, evaluated or used as a teacher as an ordinary run, and a study finds its seeds
where it looks for them. The mesh has a `replica` axis beside `data`: the replicas are
split over device groups, and each replica's batch over the devices of its group
(`mesh_shape`, `map_replicas`).
"""

import dataclasses
import itertools
import math
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import ml_collections
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from jaxkd import config_schema
from jaxkd.ranges import did_you_mean

PyTree = Any
REPLICA_AXIS = "replica"
SEED_PLACEHOLDER = "{seed}"


def parse_seeds(text: str) -> tuple[int, ...]:
  """'0,1,2' → (0, 1, 2); raises ValueError saying what is wrong."""
  try:
    seeds = tuple(int(part) for part in config_schema.split_names(text))
  except ValueError:
    raise ValueError(f"config.seeds='{text}' must be comma-separated integers, e.g. 0,1,2"
                     ) from None
  if any(seed < 0 for seed in seeds):
    raise ValueError(f"config.seeds='{text}': seeds must be ≥ 0")
  if len(set(seeds)) != len(seeds):
    raise ValueError(f"config.seeds='{text}' repeats a seed: each replica needs its own")
  return seeds


def parse_sweep(text: str, method: str) -> dict[str, tuple[float, ...]]:
  """'kd.temperature=2,4;kd.kd_weight=0.9,0.5' (method 'kd') → {'temperature': (2.0, 4.0),
  'kd_weight': (0.9, 0.5)}; raises ValueError saying what is wrong."""
  sweep = {}
  for part in filter(None, (p.strip() for p in text.split(";"))):
    path, _, values = part.partition("=")
    section, _, field = path.strip().partition(".")
    if not values or section != method or not field:
      raise ValueError(f"config.sweep='{text}': each part is {method}.<setting>=v1,v2,... "
                       f"(a setting of the run's method '{method}'), got '{part}'"
                       f"{did_you_mean(section, [method]) if field else ''}")
    try:
      sweep[field] = tuple(float(v) for v in config_schema.split_names(values))
    except ValueError:
      raise ValueError(f"config.sweep='{text}': the values of {path} must be numbers"
                       ) from None
    if len(set(sweep[field])) != len(sweep[field]):
      raise ValueError(f"config.sweep='{text}' repeats a value of {path}")
  if len({len(values) for values in sweep.values()}) > 1:
    raise ValueError(f"config.sweep='{text}': every setting needs as many values (the k-th "
                     "values run together)")
  return sweep


@dataclasses.dataclass(frozen=True)
class Replica:
  """One run of a replicated run: its seed and its method settings (field → value)."""
  seed: int
  settings: tuple[tuple[str, float], ...] = ()
  directory: str = ""  # Relative to the run's workdir.


def asks_for_seeds(config: ml_collections.ConfigDict) -> bool:
  """Whether `config` trains several seeds (each in its `seed_<s>` directory)."""
  return config.num_replicas > 1 or bool(config.seeds.strip())


def seed_directory(seed: int | str) -> str:
  """The directory of a seed's replica under the run's workdir ('seed_{seed}' with the
  placeholder, for paths that each replica completes with its own seed)."""
  return f"seed_{seed}"


def is_replicated(config: ml_collections.ConfigDict) -> bool:
  """Whether `config` asks for replicas (its results then go to the replicas' directories)."""
  return asks_for_seeds(config) or bool(config.sweep.strip())


def replica_seeds(config: ml_collections.ConfigDict) -> tuple[int, ...]:
  """The replicas' seeds: `config.seeds`, else seed, seed + 1, …, seed + num_replicas − 1."""
  if config.seeds.strip():
    seeds = parse_seeds(config.seeds)
    if config.num_replicas not in (1, len(seeds)):
      raise ValueError(f"config.num_replicas={config.num_replicas} but config.seeds names "
                       f"{len(seeds)} seeds: give one of the two")
    return seeds
  return tuple(range(config.seed, config.seed + config.num_replicas))


def replica_runs(config: ml_collections.ConfigDict) -> tuple[Replica, ...]:
  """Every replica of `config`: each setting of the sweep (if any) with each seed."""
  seeded = asks_for_seeds(config)
  sweep = parse_sweep(config.sweep, config.method)
  settings = [tuple(zip(sweep, values)) for values in zip(*sweep.values())] or [()]
  runs = []
  for chosen, seed in itertools.product(settings, replica_seeds(config)):
    parts = [settings_directory(chosen)] if chosen else []
    parts += [seed_directory(seed)] if seeded else []
    runs.append(Replica(seed, chosen, "/".join(parts)))
  return tuple(runs)


def settings_directory(settings: tuple[tuple[str, float], ...]) -> str:
  """The directory name of a sweep's settings, e.g. 'temperature_4' ('' for none)."""
  return "-".join(f"{field}_{value:g}" for field, value in settings)


def sweep_values(runs: Sequence[Replica]) -> dict[str, tuple[float, ...]]:
  """`{setting: each replica's value}` of the swept settings ({} without a sweep)."""
  return {field: tuple(dict(run.settings)[field] for run in runs)
          for field, _ in runs[0].settings}


def with_seed_paths(config: ml_collections.ConfigDict, seed: int) -> ml_collections.ConfigDict:
  """`config` with `{seed}` in its `teacher_checkpoint` replaced by `seed` (the same config
  when it has none): seed s of a run distils from its own teacher, e.g.
  `--config.teacher_checkpoint=teachers/seed_{seed}` (and stage s of a replicated pipeline
  from stage s of the stage before)."""
  if SEED_PLACEHOLDER not in config.teacher_checkpoint:
    return config
  resolved = ml_collections.ConfigDict(config.to_dict())
  resolved.teacher_checkpoint = config.teacher_checkpoint.replace(SEED_PLACEHOLDER, str(seed))
  return resolved


def single_runs(config: ml_collections.ConfigDict
                ) -> list[tuple[Replica, ml_collections.ConfigDict]]:
  """Each single run that `config` stands for, with its config: every replica of a
  replicated run (`replica_runs`), or the run itself (directory '')."""
  if not is_replicated(config):
    return [(Replica(config.seed), with_seed_paths(config, config.seed))]
  return [(replica, replica_config(config, replica)) for replica in replica_runs(config)]


def replica_config(config: ml_collections.ConfigDict,
                   replica: Replica) -> ml_collections.ConfigDict:
  """The config of the single run that `replica` is."""
  single = with_seed_paths(ml_collections.ConfigDict(config.to_dict()), replica.seed)
  single.seed, single.num_replicas, single.seeds, single.sweep = replica.seed, 1, "", ""
  if replica.settings and config.method not in single:
    single[config.method] = ml_collections.ConfigDict()
  for field, value in replica.settings:
    single[config.method][field] = value
  return single


def mesh_shape(num_replicas: int, num_devices: int) -> tuple[int, int]:
  """(replica shards, data shards) of the mesh: as many device groups as the replicas and
  devices allow (their greatest common divisor), each group splitting the batches of its
  replicas. Small models train faster with whole batches per device than with each batch
  cut into slivers, and the groups need no traffic between them.

  With several processes each group takes devices from every process (`step.create_mesh`
  puts device d·R + r at (replica r, data d)), so each process loads its slice of every
  replica's batch, as it does of a single run's."""
  shards = math.gcd(num_replicas, num_devices)
  return shards, num_devices // shards


def map_replicas(fn, mesh: Mesh, in_axes, out_axes):
  """`jax.vmap(fn, in_axes, out_axes)` over the replica axis, split over the mesh's `replica`
  axis: each device group maps over its own replicas inside a `jax.shard_map` that is
  manual over `replica` only (the compiler still splits each batch over `data`).

  The shard_map is not a style choice: left to the compiler, the split vmapped step is
  wrong on XLA:CPU (jax 0.10.2): a vmapped 1×1 convolution whose replica axis is split
  over devices comes out with errors of order 1 (`tests/core/test_replicas.py` keeps the
  case that found it)."""
  mapped = jax.vmap(fn, in_axes=in_axes, out_axes=out_axes)
  if mesh.shape[REPLICA_AXIS] == 1:
    return mapped
  specs = lambda axes: jax.tree.map(
      lambda axis: PartitionSpec() if axis is None else PartitionSpec(REPLICA_AXIS), axes,
      is_leaf=lambda x: x is None)
  return jax.shard_map(mapped, mesh=mesh, in_specs=specs(in_axes), out_specs=specs(out_axes),
                       axis_names={REPLICA_AXIS})


def stack(trees: Sequence[PyTree], axes: PyTree) -> PyTree:
  """One tree with a leading replica axis where `axes` (a prefix of the trees) says 0, and
  the first tree's value where it says None (the parts all replicas share)."""
  return jax.tree.map(lambda axis, *parts: _stack_part(axis, parts), axes, *trees,
                      is_leaf=lambda x: x is None)


def _stack_part(axis: int | None, parts: Sequence[PyTree]) -> PyTree:
  if axis is None:
    return parts[0]
  return jax.tree.map(lambda *leaves: jnp.stack(leaves), *parts)


def unstack(tree: PyTree, axes: PyTree, index: int) -> PyTree:
  """Replica `index`'s part of a stacked `tree` (the shared parts as they are)."""
  return jax.tree.map(
      lambda axis, part: part if axis is None else jax.tree.map(lambda x: x[index], part),
      axes, tree, is_leaf=lambda x: x is None)


def shardings(mesh: Mesh, axes: PyTree) -> PyTree:
  """The shardings of a stacked tree (a prefix, as `axes`): mapped parts split over the
  `replica` mesh axis, shared parts replicated."""
  split, whole = NamedSharding(mesh, PartitionSpec(REPLICA_AXIS)), NamedSharding(mesh,
                                                                                 PartitionSpec())
  return jax.tree.map(lambda axis: whole if axis is None else split, axes,
                      is_leaf=lambda x: x is None)
