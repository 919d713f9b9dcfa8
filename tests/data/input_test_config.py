"""Shared helpers for the input-pipeline tests: a config like the trainer's, and the mesh."""

import jax
import ml_collections
import numpy as np


def make_config(dataset: str, data_dir: str, **overrides) -> ml_collections.ConfigDict:
  """The config fields `jaxkd.data.create_input` reads, with small test batch sizes."""
  fields = dict(dataset=dataset, data_dir=data_dir, batch_size=64, eval_batch_size=128,
                seed=0, input_path="auto", image_size=224)
  fields.update(overrides)
  return ml_collections.ConfigDict(fields)


def data_mesh() -> jax.sharding.Mesh:
  return jax.sharding.Mesh(np.array(jax.devices()), ("data",))
