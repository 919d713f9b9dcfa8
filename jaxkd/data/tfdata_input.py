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
from jaxkd.data import input_base as input_lib
from jaxkd.data import tf_augment
from jaxkd.data import tfds_source
from jaxkd.data import validation_split

STREAM_SHUFFLE_BUFFER = 10_000

try:  # tf.data must not take GPU memory from JAX.
  tf.config.set_visible_devices([], "GPU")
except RuntimeError:  # TensorFlow's devices were already initialised by its user.
  pass


def derived_seed(*parts: int) -> int:
  """A 31-bit seed that depends on all of `parts`."""
  return int(np.random.SeedSequence(list(parts)).generate_state(1)[0] >> 1)


def _dataset_of(images: np.ndarray, labels: np.ndarray) -> tf.data.Dataset:
  return tf.data.Dataset.from_tensor_slices({"image": images, "label": labels})


def _host_split(split: str, drop_remainder: bool) -> Any:
  if jax.process_count() == 1:
    return split
  return tfds.split_for_jax_process(split, drop_remainder=drop_remainder)


class TfDataInput(input_lib.Input):
  """`Input` fed by per-host tf.data pipelines; see the module docstring."""

  path = "tfdata"

  def __init__(self, info: datasets.DatasetInfo, source: datasets.DatasetSource,
               builder: tfds.core.DatasetBuilder, *, batch_size: int, eval_batch_size: int,
               seed: int, mesh: jax.sharding.Mesh,
               selection: input_lib.TrainingSelection = input_lib.TrainingSelection()):
    self.info = info
    self._builder = builder
    self._in_memory = source.fits_in_memory
    self._host = jax.process_index()
    self._local_batch = batch_size // jax.process_count()
    self._local_eval_batch = eval_batch_size // jax.process_count()
    self._sharding = NamedSharding(mesh, P("data"))
    train_split, eval_splits = source.train_split, {input_lib.TEST_SPLIT: source.eval_split}
    validation_examples = selection.validation_examples
    if selection.train_examples_per_class and not self._in_memory:
      raise ValueError(f"train_examples_per_class needs a data set read into memory; "
                       f"'{info.name}' is streamed from its files (choose a subset with a "
                       "smaller data set, or set it to 0)")
    if validation_examples:  # In memory, the held-out examples are chosen from the arrays.
      streamed = validation_split.streamed_splits(source.train_split, validation_examples)
      eval_splits[input_lib.VALIDATION_SPLIT] = None if self._in_memory else streamed[1]
      train_split = source.train_split if self._in_memory else streamed[0]
    self.eval_splits = tuple(eval_splits)
    self._train_split = _host_split(train_split, drop_remainder=True)
    self._eval_tfds_splits = {name: _host_split(split, drop_remainder=False)
                              for name, split in eval_splits.items() if split is not None}
    if self._in_memory:
      self._load_in_memory(source, selection)
      host_train = int(self._train_examples.cardinality())
      host_eval = {name: int(examples.cardinality())
                   for name, examples in self._eval_examples.items()}
    else:
      host_train = builder.info.splits[self._train_split].num_examples
      host_eval = {name: builder.info.splits[split].num_examples
                   for name, split in self._eval_tfds_splits.items()}
    if jax.process_count() > 1:  # Every host must produce the same number of eval batches.
      host_eval = {name: math.ceil(self._split_size(name, eval_splits, validation_examples)
                                   / jax.process_count()) for name in eval_splits}
    self.steps_per_epoch = host_train // self._local_batch
    if self.steps_per_epoch == 0:
      raise ValueError(f"batch_size={batch_size} exceeds the training examples of "
                       f"'{info.name}'")
    self._num_eval_batches = {name: math.ceil(count / self._local_eval_batch)
                              for name, count in host_eval.items()}
    self.num_eval_batches = self._num_eval_batches[input_lib.TEST_SPLIT]
    self._reseed(seed)

  def _reseed(self, seed: int) -> None:
    self._seed = seed
    self._augment_seed = derived_seed(seed, self._host, 1)

  def _split_size(self, name: str, eval_splits: dict[str, str], validation_examples: int) -> int:
    if name == input_lib.VALIDATION_SPLIT:
      return validation_examples
    return self._builder.info.splits[eval_splits[name]].num_examples

  def _load_in_memory(self, source: datasets.DatasetSource,
                      selection: input_lib.TrainingSelection) -> None:
    """This host's train and evaluation examples, read once into memory.

    With a validation split or a subset, every host reads the whole training split, selects
    the same examples, and keeps every P-th of the training ones (equal parts) and of the
    held-out ones.
    """
    self._eval_examples = {input_lib.TEST_SPLIT: self._examples_in_memory(
        self._eval_tfds_splits[input_lib.TEST_SPLIT])}
    if not selection.selects:
      self._train_examples = self._examples_in_memory(self._train_split)
      return
    train, validation = input_lib.split_arrays(
        tfds_source.load_split_arrays(self._builder, source.train_split), selection)
    hosts = jax.process_count()
    per_host = len(train[1]) // hosts
    self._train_examples = _dataset_of(*(a[self._host::hosts][:per_host] for a in train))
    if validation is not None:
      self._eval_examples[input_lib.VALIDATION_SPLIT] = _dataset_of(
          *(a[self._host::hosts] for a in validation))

  def _examples_in_memory(self, split: Any) -> tf.data.Dataset:
    return _dataset_of(*tfds_source.load_split_arrays(self._builder, split))

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

  def eval_batches(self, split: str = input_lib.TEST_SPLIT) -> Iterator[dict[str, jax.Array]]:
    self._check_split(split)
    if self._in_memory:
      examples = self._eval_examples[split]
    else:
      examples = tfds_source.tf_examples(
          self._builder, self._eval_tfds_splits[split],
          decode_images=self.info.augmentation != "imagenet")
    padding = tf.data.Dataset.from_tensors({
        "image": tf.zeros(self.info.image_shape, tf.float32),
        "label": tf.constant(0, tf.int32), "mask": tf.constant(False)}).repeat()
    batches = (examples.map(self._prepare_eval, num_parallel_calls=tf.data.AUTOTUNE,
                            deterministic=True)
               .concatenate(padding)
               .batch(self._local_eval_batch)
               .take(self._num_eval_batches[split])
               .prefetch(tf.data.AUTOTUNE))
    for local_batch in tfds.as_numpy(batches):
      yield self._to_global(local_batch)
