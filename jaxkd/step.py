"""The jit-compiled train and eval steps, sharded over a `data` mesh axis.

One code path from one CPU to a pod: the batch is sharded on the mesh's `data` axis,
every parameter is replicated, and under jit batch norm reduces over the global batch.
A replicated run (`jaxkd.replicas`) maps the same step over a leading replica axis of the
state, the batch (unless the replicas share their seed) and the swept settings, and splits
the replicas over the mesh's `replica` axis.
"""

from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from jaxkd import losses, replicas
from jaxkd.methods import base
from jaxkd.state import DistillState

PyTree = Any
DATA_AXIS = "data"
# The train step's metrics entry `{name: bool}` flagging non-finite loss terms and state fields.
NONFINITE = "nonfinite"
STATE_FIELDS = ("params", "batch_stats", "student_opt_state", "teacher_opt_state",
                "method_state")


def create_mesh(devices: list[jax.Device] | None = None, num_replicas: int = 1) -> Mesh:
  """A (`replica`, `data`) mesh over all devices (of all processes): the replicas of a
  replicated run over the first axis (`replicas.mesh_shape`), each batch over the second.

  Device d·R + r sits at (replica r, data d)."""
  devices = jax.devices() if devices is None else devices
  replica_shards, data_shards = replicas.mesh_shape(num_replicas, len(devices))
  grid = np.asarray(devices).reshape(data_shards, replica_shards).T
  return Mesh(grid, (replicas.REPLICA_AXIS, DATA_AXIS))


def batch_sharding(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def replica_batch_sharding(mesh: Mesh) -> NamedSharding:
  """Stacked batches (replica, example, ...): replicas over `replica`, examples over `data`."""
  return NamedSharding(mesh, PartitionSpec(replicas.REPLICA_AXIS, DATA_AXIS))


def replicated_sharding(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, PartitionSpec())


def _all_finite(tree: PyTree) -> jax.Array:
  """Whether every inexact entry of `tree` is finite (True for a tree without any)."""
  leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)
            if jnp.issubdtype(jnp.result_type(x), jnp.inexact)]
  return jnp.all(jnp.stack(leaves)) if leaves else jnp.bool_(True)


def non_finite_parts(state: DistillState, metrics: Mapping[str, jax.Array]) -> dict[str, jax.Array]:
  """`{name: flag}`: which metrics (loss terms) and which state fields hold a NaN or an inf."""
  flags = {name: ~_all_finite(value) for name, value in metrics.items()}
  for field in STATE_FIELDS:
    flags[field] = ~_all_finite(getattr(state, field))
  return flags


def _untrained(groups: Mapping[str, PyTree], trainable: Mapping[str, PyTree]) -> dict:
  """The groups of a params-shaped tree (params, batch_stats) that are not in `trainable`."""
  return {group: value for group, value in groups.items() if group not in trainable}


def make_train_step(method: base.Method, nets: base.Networks, optimizers: base.Optimizers,
                    learning_rate: optax.Schedule, steps_per_epoch: int,
                    mesh: Mesh, state_axes: PyTree | None = None,
                    settings: Mapping[str, Any] | None = None, shared_batch: bool = False
                    ) -> Callable[[DistillState, Mapping[str, jax.Array]],
                                  tuple[DistillState, dict[str, jax.Array]]]:
  """Returns the jitted `train_step(state, batch) -> (state, metrics)`.

  One `value_and_grad` over the groups the method trains (`method.trainable`), applied by
  `method.apply_gradients` with the run's `optimizers`; `method.post_update` runs after
  this main update, inside the same compiled step. The groups the method does not train (a
  frozen teacher) leave the step exactly as they entered it. `metrics[NONFINITE]` says
  which loss terms and which parts of the new state are not finite; a step with any of them
  leaves the state unchanged (step counter included), and the trainer stops at the first
  such step before it saves anything.

  With `state_axes` (`replicas.state_axes`: 0 on the replicated parts of the state, None on
  the shared ones) the step maps over stacked replicas: states and batches with a leading
  replica axis (one batch for all when `shared_batch`: the replicas share their seed),
  metrics per replica. `settings` (`{setting: one value per replica}`, of the method's
  `traced_settings`) are the replicas' own values of those settings, traced.
  """

  def train_step(state: DistillState, batch: Mapping[str, jax.Array], values=None):
    method_now = method.with_settings(values) if values else method
    rng = jax.random.fold_in(state.key(), state.step)
    step_info = base.StepInfo(step=state.step, epoch=state.step // steps_per_epoch + 1,
                              steps_per_epoch=steps_per_epoch, method_state=state.method_state)
    trainable = method_now.trainable(state.params)

    def loss_fn(trainable_params):
      params = dict(state.params, **trainable_params)
      return method_now.loss(nets, params, state.batch_stats, batch, rng, step_info)

    (loss, (batch_stats, metrics)), grads = jax.value_and_grad(loss_fn, has_aux=True)(trainable)
    new_state = method_now.apply_gradients(state, grads, batch_stats, optimizers)
    new_state = new_state.replace(step=state.step + 1)
    new_state, post_metrics = method_now.post_update(nets, new_state, batch, rng, step_info,
                                                     optimizers)
    metrics = dict(metrics, **post_metrics)
    metrics["loss"] = loss
    nonfinite = non_finite_parts(new_state, metrics)
    finite = ~jnp.any(jnp.stack(list(nonfinite.values())))
    new_state = jax.tree.map(lambda new, old: jnp.where(finite, new, old), new_state, state)
    # Untrained groups (frozen teachers) pass through as they came (shared by replicas).
    new_state = new_state.replace(
        params=dict(new_state.params, **_untrained(state.params, trainable)),
        batch_stats=dict(new_state.batch_stats, **_untrained(state.batch_stats, trainable)))
    metrics = dict(metrics, learning_rate=learning_rate(state.step))
    metrics[NONFINITE] = nonfinite
    return new_state, metrics

  replicated = replicated_sharding(mesh)
  if state_axes is None:
    return jax.jit(train_step, in_shardings=(replicated, batch_sharding(mesh)),
                   out_shardings=(replicated, replicated), donate_argnums=0)
  state_shardings = replicas.shardings(mesh, state_axes)
  batch_axis, batch_in = ((None, batch_sharding(mesh)) if shared_batch
                          else (0, replica_batch_sharding(mesh)))
  if not settings:
    return jax.jit(replicas.map_replicas(train_step, mesh, in_axes=(state_axes, batch_axis),
                                         out_axes=(state_axes, 0)),
                   in_shardings=(state_shardings, batch_in),
                   out_shardings=(state_shardings, replicated), donate_argnums=0)
  per_replica = NamedSharding(mesh, PartitionSpec(replicas.REPLICA_AXIS))
  values = jax.device_put({name: jnp.asarray(v, jnp.float32) for name, v in settings.items()},
                          per_replica)
  mapped = jax.jit(replicas.map_replicas(train_step, mesh, in_axes=(state_axes, batch_axis, 0),
                                         out_axes=(state_axes, 0)),
                   in_shardings=(state_shardings, batch_in, per_replica),
                   out_shardings=(state_shardings, replicated), donate_argnums=0)
  return lambda state, batch: mapped(state, batch, values)


def state_axes(state: DistillState, method: base.Method,
               own_teachers: bool = False) -> DistillState:
  """The replica axes of a replicated run's state: 0 everywhere but on the groups the
  method does not train (a frozen teacher's parameters and statistics), which all
  replicas share (None), unless each replica has its own teachers (`own_teachers`)."""
  untrained = _untrained(state.params, method.trainable(state.params))
  shared = {group: None for group in untrained if not (own_teachers and group == "teachers")}
  axes = jax.tree.map(lambda _: 0, state)
  return axes.replace(params=dict(axes.params, **shared),
                      batch_stats=dict(axes.batch_stats, **shared))


def make_eval_step(predict: Callable[[PyTree, PyTree, jax.Array], jax.Array],
                   mesh: Mesh, state_axes: DistillState | None = None
                   ) -> Callable[[PyTree, PyTree, Mapping[str, jax.Array]], dict[str, jax.Array]]:
  """Returns the jitted `eval_step(params, batch_stats, batch) -> sums` for masked batches.

  Sums (not means) of correct top-1 and top-5 predictions, cross entropy and real examples,
  so that padded examples of the last batch count for nothing. With `state_axes` (of a
  replicated run) it evaluates every replica on the same batch: sums per replica.
  """

  def eval_step(params, batch_stats, batch):
    logits = predict(params, batch_stats, batch["image"])
    mask = batch["mask"].astype(jnp.float32)
    correct = (jnp.argmax(logits, axis=-1) == batch["label"]).astype(jnp.float32)
    _, top5 = jax.lax.top_k(logits, min(5, logits.shape[-1]))
    correct_top5 = jnp.any(top5 == batch["label"][:, None], axis=-1).astype(jnp.float32)
    ce = losses.cross_entropy(logits, batch["label"])
    return {"correct": jnp.sum(correct * mask), "correct_top5": jnp.sum(correct_top5 * mask),
            "ce_sum": jnp.sum(ce * mask), "count": jnp.sum(mask)}

  replicated = replicated_sharding(mesh)
  if state_axes is None:
    return jax.jit(eval_step, in_shardings=(replicated, replicated, batch_sharding(mesh)),
                   out_shardings=replicated)
  variable_axes = (state_axes.params, state_axes.batch_stats)
  return jax.jit(replicas.map_replicas(eval_step, mesh, in_axes=(*variable_axes, None),
                                       out_axes=0),
                 in_shardings=(*(replicas.shardings(mesh, a) for a in variable_axes),
                               batch_sharding(mesh)),
                 out_shardings=replicated)


class EvaluationStopped(Exception):
  """An evaluation abandoned between two batches because the run is stopping."""


def evaluate(eval_step: Callable, params: PyTree, batch_stats: PyTree,
             batches) -> dict[str, float]:
  """Top-1 and top-5 accuracy and cross entropy over every batch of `batches` (each example
  once), and the example count."""
  return evaluate_replicas(eval_step, params, batch_stats, batches)[0]


def evaluate_replicas(eval_step: Callable, params: PyTree, batch_stats: PyTree, batches,
                      stopping: Callable[[], bool] = lambda: False) -> list[dict[str, float]]:
  """`evaluate` of each replica (one entry for a step that is not replicated); raises
  EvaluationStopped when `stopping()` turns true, checked before each batch."""
  totals = None
  for batch in batches:
    if stopping():
      raise EvaluationStopped()
    sums = eval_step(params, batch_stats, batch)
    totals = sums if totals is None else jax.tree.map(jnp.add, totals, sums)
  totals = {name: np.atleast_1d(np.asarray(value, np.float64))
            for name, value in jax.device_get(totals).items()}
  return [{"accuracy": float(totals["correct"][k] / count),
           "top5_accuracy": float(totals["correct_top5"][k] / count),
           "loss": float(totals["ce_sum"][k] / count), "count": float(count)}
          for k, count in enumerate(totals["count"])]
