"""The contract of an input path (`Input`), apart from the paths and from choosing one.

`device_input` and `tfdata_input` implement `Input`; `input.create_input` picks one.
"""

import abc
import copy
import dataclasses
from typing import Iterator

import jax
import numpy as np

from jaxkd.data import datasets
from jaxkd.data import validation_split
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


@dataclasses.dataclass(frozen=True)
class TrainingSelection:
  """Which training examples a run uses (config fields of the same names; 0 = off)."""
  validation_examples: int = 0
  validation_seed: int = 0
  train_examples_per_class: int = 0
  train_subset_seed: int = 0

  @classmethod
  def from_config(cls, config) -> "TrainingSelection":
    return cls(**{field.name: config.get(field.name, 0) for field in dataclasses.fields(cls)})

  @property
  def selects(self) -> bool:
    """Whether the training split is cut at all (else it is read as stored)."""
    return bool(self.validation_examples or self.train_examples_per_class)


def split_arrays(train: tuple[np.ndarray, np.ndarray], selection: TrainingSelection
                 ) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray] | None]:
  """(train, validation or None) arrays of the training split under `selection`.

  The validation split is held out first (class-balanced, chosen by validation_seed), then
  `train_examples_per_class` of every class are kept of the rest (chosen by
  train_subset_seed): the validation images are the same with or without a subset.
  """
  images, labels = train
  kept, held_out = validation_split.holdout(labels, selection.validation_examples,
                                            selection.validation_seed)
  if selection.train_examples_per_class:
    kept = kept[validation_split.balanced_subset(labels[kept], selection.train_examples_per_class,
                                                 selection.train_subset_seed)]
  validation = (images[held_out], labels[held_out]) if selection.validation_examples else None
  return (images[kept], labels[kept]), validation
