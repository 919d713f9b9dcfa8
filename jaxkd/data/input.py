"""`create_input(config, mesh)`: the training and evaluation batches of a run.

Two interchangeable paths produce the same contract (see `Input`):
- 'device' (`device_input`): the whole split lives on every device as uint8; shuffling,
  crop/flip and normalisation run in one jit-compiled function. For data sets that fit in
  memory; needs no TensorFlow when the data is stored as ArrayRecord.
- 'tfdata' (`tfdata_input`): per-host tf.data pipelines (required for ImageNet).
`input_path='auto'` picks 'device' for data sets that fit in memory, 'tfdata' otherwise.

Evaluation splits: 'test' is the data set's published evaluation split (CIFAR's test split,
ImageNet's TFDS 'validation' split, as papers report); 'validation' exists when
`validation_examples` > 0 and is held out of the training split (`validation_split`), which
then trains on the rest.

Config fields read: dataset, data_dir ('' = TFDS default), batch_size and eval_batch_size
(global), seed, input_path ('auto' | 'device' | 'tfdata', default 'auto'), image_size (ImageNet
resolution, default 224), validation_examples and validation_seed (default 0: no validation).
"""

import abc
import copy
import dataclasses
from typing import Iterator

import jax
import ml_collections
import numpy as np

from jaxkd.data import datasets
from jaxkd.data import tfds_source
from jaxkd.data import validation_split

INPUT_PATHS = ("auto", "device", "tfdata")
TEST_SPLIT = "test"
VALIDATION_SPLIT = "validation"


class Input(abc.ABC):
  """Batches of one data set, as global jax.Arrays sharded `NamedSharding(mesh, P('data'))`.

  Attributes:
    info: the data set as the model sees it (ImageNet's image_shape follows image_size).
    steps_per_epoch: floor(training examples / batch_size); the last partial batch of each
      epoch is dropped (with several hosts: floor(examples per host / local batch)).
    num_eval_batches: length of `eval_batches('test')`.
    eval_splits: the evaluation splits: ('test',) or ('test', 'validation').
    path: 'device' or 'tfdata'.
  """
  info: datasets.DatasetInfo
  steps_per_epoch: int
  num_eval_batches: int
  eval_splits: tuple[str, ...]
  path: str

  @abc.abstractmethod
  def train_batches(self, start_step: int = 0) -> Iterator[dict[str, jax.Array]]:
    """Endless {'image': float32 (B, H, W, C) normalised, 'label': int32 (B,)}, from start_step.

    The batch at global step s depends only on (config.seed, s) (and, for 'tfdata', on the
    process count), so resuming at start_step continues the very same stream. Epoch e covers
    steps [e * steps_per_epoch, (e + 1) * steps_per_epoch) with its own shuffle.
    """

  @abc.abstractmethod
  def eval_batches(self, split: str = TEST_SPLIT) -> Iterator[dict[str, jax.Array]]:
    """{'image', 'label', 'mask'} batches of eval_batch_size covering each example of `split`
    ('test' or 'validation') once.

    The last batch is padded with zero images; 'mask' (B,) bool is False on padding.
    """

  def with_seed(self, seed: int) -> "Input":
    """The same data with the train stream (order and augmentation) of `seed`: what the run
    with that seed reads. Shares the data (and compiled functions) with this `Input`."""
    other = copy.copy(self)
    other._reseed(seed)  # pylint: disable=protected-access
    return other

  @abc.abstractmethod
  def _reseed(self, seed: int) -> None:
    """Makes this `Input`'s train stream the one of `seed`."""

  def _check_split(self, split: str) -> str:
    if split not in self.eval_splits:
      raise ValueError(f"no '{split}' split in this run; evaluation splits: "
                       f"{', '.join(self.eval_splits)} (a validation split needs "
                       "--config.validation_examples > 0)")
    return split


def _choose_path(source: datasets.DatasetSource, requested: str) -> str:
  if requested not in INPUT_PATHS:
    raise ValueError(f"unknown input_path '{requested}'; valid: {', '.join(INPUT_PATHS)}")
  if requested == "auto":
    return "device" if source.fits_in_memory else "tfdata"
  if requested == "device" and not source.fits_in_memory:
    raise ValueError(f"data set '{source.info.name}' does not fit in device memory; "
                     "use input_path='tfdata'")
  return requested


def _check_batch_size(name: str, batch_size: int, mesh: jax.sharding.Mesh) -> None:
  divisor = max(mesh.devices.size, jax.process_count())
  if batch_size <= 0 or batch_size % divisor:
    raise ValueError(f"{name}={batch_size} must be a positive multiple of the {mesh.devices.size}"
                     f" devices and {jax.process_count()} processes")


def _model_info(source: datasets.DatasetSource, config: ml_collections.ConfigDict):
  info = source.info
  if info.augmentation == "imagenet":
    size = int(config.get("image_size", 224))
    info = dataclasses.replace(info, image_shape=(size, size, info.image_shape[-1]))
  return info


def create_input(config: ml_collections.ConfigDict, mesh: jax.sharding.Mesh) -> Input:
  """Opens (or builds) the data set named by `config.dataset` and returns its `Input`.

  Raises:
    ValueError: unknown data set or input path, or batch sizes the mesh cannot split.
    tfds_source.MissingDatasetError: the data is not prepared and cannot be built here.
  """
  source = datasets.dataset_source(config.dataset)
  path = _choose_path(source, config.get("input_path", "auto"))
  _check_batch_size("batch_size", config.batch_size, mesh)
  _check_batch_size("eval_batch_size", config.eval_batch_size, mesh)
  info = _model_info(source, config)
  builder = tfds_source.prepared_builder(source, config.data_dir)
  holdout = config.get("validation_examples", 0)
  validation_seed = config.get("validation_seed", 0)
  if path == "device":
    from jaxkd.data import device_input  # pylint: disable=g-import-not-at-top
    train = tfds_source.load_split_arrays(builder, source.train_split)
    evaluation = {TEST_SPLIT: tfds_source.load_split_arrays(builder, source.eval_split)}
    if holdout:
      train, evaluation[VALIDATION_SPLIT] = split_arrays(train, holdout, validation_seed)
    return device_input.DeviceInput(
        info, train=train, evaluation=evaluation,
        batch_size=config.batch_size, eval_batch_size=config.eval_batch_size,
        seed=config.seed, mesh=mesh)
  from jaxkd.data import tfdata_input  # pylint: disable=g-import-not-at-top
  return tfdata_input.TfDataInput(
      info, source, builder, batch_size=config.batch_size,
      eval_batch_size=config.eval_batch_size, seed=config.seed, mesh=mesh,
      validation_examples=holdout, validation_seed=validation_seed)


def split_arrays(train: tuple[np.ndarray, np.ndarray], validation_examples: int,
                 seed: int) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
  """(train, validation) arrays: `validation_examples` held out, class-balanced and seeded."""
  images, labels = train
  kept, held_out = validation_split.holdout(labels, validation_examples, seed)
  return (images[kept], labels[kept]), (images[held_out], labels[held_out])
