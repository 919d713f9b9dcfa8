"""Device-resident input: the split on every device as uint8, batches made by jit.

Train: epoch e's order is `jax.random.permutation(fold_in(shuffle_key, e), N)`; step s takes
positions [(s mod S) * B, (s mod S + 1) * B) of its epoch's order (S = steps_per_epoch,
the last N - S * B examples of the order are left out that epoch), gathers them, applies the
data set's augmentation with `fold_in(augment_key, s)` and normalises, all in one compiled
function whose outputs are sharded `P('data')`. (shuffle_key, augment_key) =
`stream_keys(seed)`. No TensorFlow is imported here.

Several hosts: every host holds the full split (replicated), so the global batch of a step
is the same whatever the number of hosts.
"""

import math
from typing import Iterator, Mapping

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from jaxkd.data import datasets
from jaxkd.data import device_augment
from jaxkd.data import input_base as input_lib

CIFAR_PAD = 4
_DATA_STREAM_TAG = 0x6A6B64  # Folded into the run seed: the data stream's own key.


def stream_keys(seed: int) -> tuple[jax.Array, jax.Array]:
  """(shuffle_key, augment_key) of the data stream of run seed `seed`."""
  shuffle_key, augment_key = jax.random.split(
      jax.random.fold_in(jax.random.key(seed), _DATA_STREAM_TAG))
  return shuffle_key, augment_key


def _put_replicated(array: np.ndarray, sharding: NamedSharding) -> jax.Array:
  return jax.make_array_from_process_local_data(sharding, array, array.shape)


class DeviceInput(input_lib.Input):
  """`Input` over uint8 arrays held on every device; see the module docstring."""

  path = "device"

  def __init__(self, info: datasets.DatasetInfo, *, train: tuple[np.ndarray, np.ndarray],
               evaluation: Mapping[str, tuple[np.ndarray, np.ndarray]], batch_size: int,
               eval_batch_size: int, seed: int, mesh: jax.sharding.Mesh):
    """`evaluation` maps each evaluation split name ('test', 'validation') to its arrays."""
    self.info = info
    train_images, train_labels = train
    self.steps_per_epoch = len(train_labels) // batch_size
    if self.steps_per_epoch == 0:
      raise ValueError(f"batch_size={batch_size} exceeds the {len(train_labels)} training "
                       f"examples of '{info.name}'")
    self._batch_size = batch_size
    self._eval_batch_size = eval_batch_size
    self._num_train = len(train_labels)
    replicated = NamedSharding(mesh, P())
    self._batch_sharding = NamedSharding(mesh, P("data"))
    self._train_images = _put_replicated(train_images, replicated)
    self._train_labels = _put_replicated(train_labels, replicated)
    self.eval_splits = tuple(evaluation)
    self._eval_arrays = {name: self._padded_eval_arrays(*arrays, replicated)
                         for name, arrays in evaluation.items()}
    self.num_eval_batches = len(self._eval_arrays[input_lib.TEST_SPLIT][2])
    self._reseed(seed)
    self._epoch_order = jax.jit(self._order_of_epoch, out_shardings=replicated)
    self._train_batch = jax.jit(self._make_train_batch, out_shardings=self._batch_sharding)
    self._eval_batch = jax.jit(self._make_eval_batch, out_shardings=self._batch_sharding,
                               static_argnums=3)

  def _reseed(self, seed: int) -> None:
    self._shuffle_key, self._augment_key = stream_keys(seed)

  def _padded_eval_arrays(self, images: np.ndarray, labels: np.ndarray,
                          replicated: NamedSharding) -> tuple[jax.Array, jax.Array, range, int]:
    """(images, labels) padded to whole batches and placed, the batch indices, the count."""
    num_batches = math.ceil(len(labels) / self._eval_batch_size)
    padding = num_batches * self._eval_batch_size - len(labels)
    images = np.concatenate([images, np.zeros((padding,) + images.shape[1:], np.uint8)])
    labels = np.concatenate([labels, np.zeros((padding,), np.int32)])
    return (_put_replicated(images, replicated), _put_replicated(labels, replicated),
            range(num_batches), len(labels) - padding)

  def _order_of_epoch(self, shuffle_key: jax.Array, epoch: jax.Array) -> jax.Array:
    return jax.random.permutation(jax.random.fold_in(shuffle_key, epoch), self._num_train)

  def _make_train_batch(self, images, labels, order, augment_key, index_in_epoch, step):
    positions = jax.lax.dynamic_slice_in_dim(order, index_in_epoch * self._batch_size,
                                             self._batch_size)
    positions = jax.lax.with_sharding_constraint(positions, self._batch_sharding)
    batch_images = images[positions]
    if self.info.augmentation == "cifar":
      batch_images = device_augment.random_crop_and_flip(
          jax.random.fold_in(augment_key, step), batch_images, pad=CIFAR_PAD)
    elif self.info.augmentation != "none":
      raise ValueError(f"augmentation '{self.info.augmentation}' has no device path")
    return {"image": device_augment.normalize(batch_images, self.info.mean, self.info.std),
            "label": labels[positions]}

  def _make_eval_batch(self, images, labels, index, num_examples):
    start = index * self._eval_batch_size
    batch_images = jax.lax.dynamic_slice_in_dim(images, start, self._eval_batch_size)
    batch_labels = jax.lax.dynamic_slice_in_dim(labels, start, self._eval_batch_size)
    mask = start + jnp.arange(self._eval_batch_size) < num_examples
    return {"image": device_augment.normalize(batch_images, self.info.mean, self.info.std),
            "label": batch_labels, "mask": mask}

  def train_batches(self, start_step: int = 0) -> Iterator[dict[str, jax.Array]]:
    step = start_step
    epoch = step // self.steps_per_epoch
    order = self._epoch_order(self._shuffle_key, np.int32(epoch))
    while True:
      if step // self.steps_per_epoch != epoch:
        epoch = step // self.steps_per_epoch
        order = self._epoch_order(self._shuffle_key, np.int32(epoch))
      yield self._train_batch(self._train_images, self._train_labels, order,
                              self._augment_key, np.int32(step % self.steps_per_epoch),
                              np.int32(step))
      step += 1

  def eval_batches(self, split: str = input_lib.TEST_SPLIT) -> Iterator[dict[str, jax.Array]]:
    images, labels, indices, num_examples = self._eval_arrays[self._check_split(split)]
    for index in indices:
      yield self._eval_batch(images, labels, np.int32(index), num_examples)
