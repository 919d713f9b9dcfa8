"""Models from checkpoints: initial variables, shape-checked loading, input re-normalisation.

Used by the trainer (teachers, and a student that starts from trained weights) and by
`jaxkd.evaluate`.
"""

from typing import Any

import jax
import jax.numpy as jnp
from absl import logging

from jaxkd import checkpoint, step
from jaxkd.models import input_renormalization

PyTree = Any


def init_variables(module, rng: jax.Array, image_shape: tuple[int, ...]) -> tuple[PyTree, PyTree]:
  """A fresh model's (params, batch_stats) for inputs of `image_shape`."""
  variables = jax.jit(module.init, static_argnames="train")(
      rng, jnp.zeros((1, *image_shape), jnp.float32), train=False)
  return variables["params"], variables.get("batch_stats", {})


def load_model(module, name: str, path: str, info, mesh, rng,
               normalization: dict[str, list[float]] | None = None, role: str = "teacher"
               ) -> tuple[Any, PyTree, PyTree, dict]:
  """A model's (module, params, batch_stats, description) from a checkpoint, shape-checked
  (`role`: what errors call it, `checkpoint.MODEL_ROLES`).

  A model trained on inputs normalised otherwise than this data set (its description's
  `input_mean`/`input_std`, or `normalization` when given) is wrapped in
  `RenormalizedInput`, so it sees what it saw.
  """
  replicated = step.replicated_sharding(mesh)
  shapes = jax.eval_shape(lambda: init_variables(module, rng, info.image_shape))
  like = {"params": shapes[0], "batch_stats": shapes[1]}
  like = jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=replicated), like)
  variables, description = checkpoint.load_exported_model(path, name, like, role)
  description = dict(description, **(normalization or {}))
  own_mean, own_std = description.get("input_mean"), description.get("input_std")
  affine = (input_renormalization.renormalization(info.mean, info.std, own_mean, own_std)
            if own_mean and own_std else None)
  if affine is not None:
    logging.info("Model '%s' from %s was trained on inputs normalised with mean %s, std %s: "
                 "its inputs are re-normalised from the data set's.", name, path, own_mean,
                 own_std)
    module = input_renormalization.RenormalizedInput(module, *affine)
  return module, variables["params"], variables["batch_stats"], description


def input_normalization(description: dict, info) -> dict[str, list[float]]:
  """The normalisation a model's inputs are given: its checkpoint's if known, else the data's."""
  mean, std = description.get("input_mean"), description.get("input_std")
  if not (mean and std):
    mean, std = info.mean, info.std
  return {"input_mean": list(mean), "input_std": list(std)}
