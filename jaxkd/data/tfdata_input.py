"""tf.data input: each host reads its own part of the split, augments on the CPU, batches.

Host h of P reads `tfds.split_for_jax_process(split)` (train: equal parts, remainder dropped;
eval: every example). Small data sets are read once into memory, ImageNet streams from
TFRecord files with JPEG decoding fused into the crop. Each epoch is its own pipeline:
shuffle seeded by (seed, host, epoch) (ImageNet also seeds the file order; its shuffle
buffer holds `STREAM_SHUFFLE_BUFFER` examples), keep the first steps_per_epoch * local batch
examples, number them globally, skip what a resumed run has already seen, then augment each
example with the stateless seed (augment seed of (seed, host), example number). The stream
is thus a function of (seed, step) for a given number of hosts.
"""

import math
from typing import Any, Iterator

import jax
import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from jaxkd.data import datasets
from jaxkd.data import input as input_lib
from jaxkd.data import tf_augment
from jaxkd.data import tfds_source

STREAM_SHUFFLE_BUFFER = 10_000

try:  # tf.data must not take GPU memory from JAX.
  tf.config.set_visible_devices([], "GPU")
except RuntimeError:  # TensorFlow's devices were already initialised by its user.
  pass


def derived_seed(*parts: int) -> int:
  """A 31-bit seed that depends on all of `parts`."""
  return int(np.random.SeedSequence(list(parts)).generate_state(1)[0] >> 1)


def _host_split(split: str, drop_remainder: bool) -> Any:
  if jax.process_count() == 1:
    return split
  return tfds.split_for_jax_process(split, drop_remainder=drop_remainder)


class TfDataInput(input_lib.Input):
  """`Input` fed by per-host tf.data pipelines; see the module docstring."""

  path = "tfdata"

  def __init__(self, info: datasets.DatasetInfo, source: datasets.DatasetSource,
               builder: tfds.core.DatasetBuilder, *, batch_size: int, eval_batch_size: int,
               seed: int, mesh: jax.sharding.Mesh):
    self.info = info
    self._builder = builder
    self._in_memory = source.fits_in_memory
    self._seed = seed
    self._host = jax.process_index()
    self._local_batch = batch_size // jax.process_count()
    self._local_eval_batch = eval_batch_size // jax.process_count()
    self._sharding = NamedSharding(mesh, P("data"))
    self._train_split = _host_split(source.train_split, drop_remainder=True)
    self._eval_split = _host_split(source.eval_split, drop_remainder=False)
    if self._in_memory:
      self._train_examples = self._examples_in_memory(self._train_split)
      self._eval_examples = self._examples_in_memory(self._eval_split)
      host_train = int(self._train_examples.cardinality())
      host_eval = int(self._eval_examples.cardinality())
    else:
      host_train = builder.info.splits[self._train_split].num_examples
      host_eval = builder.info.splits[self._eval_split].num_examples
    if jax.process_count() > 1:  # Every host must produce the same number of eval batches.
      host_eval = math.ceil(builder.info.splits[source.eval_split].num_examples
                            / jax.process_count())
    self.steps_per_epoch = host_train // self._local_batch
    if self.steps_per_epoch == 0:
      raise ValueError(f"batch_size={batch_size} exceeds the training examples of "
                       f"'{info.name}'")
    self.num_eval_batches = math.ceil(host_eval / self._local_eval_batch)
    self._augment_seed = derived_seed(seed, self._host, 1)

  def _examples_in_memory(self, split: Any) -> tf.data.Dataset:
    images, labels = tfds_source.load_split_arrays(self._builder, split)
    return tf.data.Dataset.from_tensor_slices({"image": images, "label": labels})

  def _train_epoch_examples(self, epoch: int) -> tf.data.Dataset:
    shuffle_seed = derived_seed(self._seed, self._host, 0, epoch)
    if self._in_memory:
      examples = self._train_examples
      buffer = int(examples.cardinality())
    else:
      examples = tfds_source.tf_examples(
          self._builder, self._train_split,
          decode_images=self.info.augmentation != "imagenet", shuffle_files=True,
          read_config=tfds.ReadConfig(shuffle_seed=shuffle_seed))
      buffer = STREAM_SHUFFLE_BUFFER
    return examples.shuffle(buffer, seed=shuffle_seed, reshuffle_each_iteration=False)

  def _augment(self, number: tf.Tensor, example: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
    seed = tf.stack([tf.constant(self._augment_seed, tf.int64), number])
    image = example["image"]
    if self.info.augmentation == "cifar":
      image = tf_augment.cifar_crop_and_flip(image, seed)
    elif self.info.augmentation == "imagenet":
      image = tf_augment.inception_crop_and_flip(image, seed, self.info.image_shape[0])
    return {"image": tf_augment.normalize(image, self.info.mean, self.info.std),
            "label": tf.cast(example["label"], tf.int32)}

  def _prepare_eval(self, example: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
    image = example["image"]
    if self.info.augmentation == "imagenet":
      image = tf_augment.resize_and_centre_crop(image, self.info.image_shape[0])
    image = tf.ensure_shape(tf_augment.normalize(image, self.info.mean, self.info.std),
                            self.info.image_shape)
    return {"image": image, "label": tf.cast(example["label"], tf.int32),
            "mask": tf.constant(True)}

  def _to_global(self, local_batch: dict[str, np.ndarray]) -> dict[str, jax.Array]:
    return {key: jax.make_array_from_process_local_data(self._sharding, value)
            for key, value in local_batch.items()}

  def train_batches(self, start_step: int = 0) -> Iterator[dict[str, jax.Array]]:
    examples_per_epoch = self.steps_per_epoch * self._local_batch
    epoch, skip_steps = divmod(start_step, self.steps_per_epoch)
    while True:
      batches = (self._train_epoch_examples(epoch)
                 .take(examples_per_epoch)
                 .enumerate(start=epoch * examples_per_epoch)
                 .skip(skip_steps * self._local_batch)
                 .map(self._augment, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
                 .batch(self._local_batch, drop_remainder=True)
                 .prefetch(tf.data.AUTOTUNE))
      for local_batch in tfds.as_numpy(batches):
        yield self._to_global(local_batch)
      epoch, skip_steps = epoch + 1, 0

  def eval_batches(self) -> Iterator[dict[str, jax.Array]]:
    if self._in_memory:
      examples = self._eval_examples
    else:
      examples = tfds_source.tf_examples(
          self._builder, self._eval_split,
          decode_images=self.info.augmentation != "imagenet")
    padding = tf.data.Dataset.from_tensors({
        "image": tf.zeros(self.info.image_shape, tf.float32),
        "label": tf.constant(0, tf.int32), "mask": tf.constant(False)}).repeat()
    batches = (examples.map(self._prepare_eval, num_parallel_calls=tf.data.AUTOTUNE,
                            deterministic=True)
               .concatenate(padding)
               .batch(self._local_eval_batch)
               .take(self.num_eval_batches)
               .prefetch(tf.data.AUTOTUNE))
    for local_batch in tfds.as_numpy(batches):
      yield self._to_global(local_batch)
