"""The held-out validation split: class-balanced, fixed by its own seed, disjoint from train."""

import numpy as np
import pytest

from jaxkd.data import validation_split


def labels_of(counts):
  return np.concatenate([np.full(n, label) for label, n in enumerate(counts)])


def test_holdout_is_class_balanced_disjoint_and_complete():
  labels = np.random.default_rng(3).permutation(labels_of([50, 40, 60, 30]))
  train, held_out = validation_split.holdout(labels, 22, seed=0)
  assert len(held_out) == 22 and len(train) == len(labels) - 22
  assert np.array_equal(np.sort(np.concatenate([train, held_out])), np.arange(len(labels)))
  # 22 over 4 classes: two classes give 6, two give 5.
  assert sorted(np.bincount(labels[held_out], minlength=4)) == [5, 5, 6, 6]
  assert np.all(np.diff(held_out) > 0) and np.all(np.diff(train) > 0)


def test_holdout_depends_on_its_seed_only():
  labels = labels_of([100] * 10)
  first = validation_split.holdout(labels, 50, seed=0)[1]
  assert np.array_equal(first, validation_split.holdout(labels, 50, seed=0)[1])
  assert not np.array_equal(first, validation_split.holdout(labels, 50, seed=1)[1])
  assert np.all(np.bincount(labels[first]) == 5)


def test_larger_holdout_contains_the_smaller_one():
  """Ranks are fixed per seed, so growing the validation split only adds examples."""
  labels = labels_of([30] * 5)
  small = set(validation_split.holdout(labels, 10, seed=4)[1])
  large = set(validation_split.holdout(labels, 25, seed=4)[1])
  assert small < large


def test_holdout_rejects_sizes_that_leave_a_class_empty():
  with pytest.raises(ValueError, match="validation_examples=9 must be between 0 and 8"):
    validation_split.holdout(labels_of([5, 5]), 9, seed=0)


def test_streamed_splits_hold_out_the_first_examples():
  assert validation_split.streamed_splits("train", 10_000) == ("train[10000:]", "train[:10000]")


def test_balanced_subset_keeps_n_of_every_class_chosen_by_its_seed():
  labels = np.random.default_rng(5).permutation(labels_of([50, 40, 60, 30]))
  subset = validation_split.balanced_subset(labels, 7, seed=0)
  assert np.all(np.bincount(labels[subset], minlength=4) == 7)
  assert np.all(np.diff(subset) > 0)
  assert np.array_equal(subset, validation_split.balanced_subset(labels, 7, seed=0))
  assert not np.array_equal(subset, validation_split.balanced_subset(labels, 7, seed=1))
  # Ranks are fixed per seed: a larger subset contains the smaller one.
  assert set(subset) < set(validation_split.balanced_subset(labels, 12, seed=0))


@pytest.mark.parametrize("per_class", [0, -1, 31])
def test_balanced_subset_rejects_sizes_a_class_cannot_give(per_class):
  with pytest.raises(ValueError, match=f"train_examples_per_class={per_class} must be between 1 "
                     "and 30 \\(class 3 has 30 training examples"):
    validation_split.balanced_subset(labels_of([50, 40, 60, 30]), per_class, seed=0)
