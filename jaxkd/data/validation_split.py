"""The training examples a run uses: a held-out validation split and a class-balanced subset.

Model selection ("best" checkpoints, early stopping, hyperparameter choice) must never look
at the test split. `holdout(labels, n, seed)` picks n training examples so that every class
gives ⌊n / C⌋ or ⌈n / C⌉ of them: each class's examples are ranked by a seeded permutation,
and the examples of rank 0 of every class come first, then those of rank 1, and so on
(classes in a seeded order within a rank). The choice depends only on (labels, n, seed), not
on the run's seed, so every run of a study is selected on the same images.

`balanced_subset(labels, n, seed)` keeps n examples of every class, ranked the same way by
its own seed (`train_subset_seed`), for data-efficient protocols: it is taken from what the
validation split leaves, so the two never share an image.

Data sets streamed from files (ImageNet) cannot be ranked by label without a full pass;
they hold out the first n examples of the split instead (`streamed_splits`), as big_vision's
`train[:n]` "minival" does.
"""

import numpy as np


def _balanced_order(labels: np.ndarray, seed: int) -> np.ndarray:
  """Every index of `labels`, rank 0 of every class first, then rank 1, and so on.

  Each class's examples are ranked by a seeded permutation; within a rank, classes come in a
  seeded order. So any prefix of the order is as class-balanced as its length allows.
  """
  classes = np.unique(labels)
  rng = np.random.default_rng(seed)
  rank = np.empty(len(labels), np.int64)
  for label in classes:
    members = np.flatnonzero(labels == label)
    rank[rng.permutation(members)] = np.arange(len(members))
  class_order = np.empty(int(classes.max()) + 1, np.int64)
  class_order[classes] = rng.permutation(len(classes))
  return np.lexsort((class_order[labels], rank))


def holdout(labels: np.ndarray, num_examples: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
  """(train indices, validation indices) of a split with `labels`; both sorted ascending.

  Raises:
    ValueError: `num_examples` is negative or leaves fewer than one training example per class.
  """
  labels = np.asarray(labels)
  num_classes = len(np.unique(labels))
  if num_examples < 0 or num_examples > len(labels) - num_classes:
    raise ValueError(f"validation_examples={num_examples} must be between 0 and "
                     f"{len(labels) - num_classes} (the {len(labels)} training examples less "
                     "one per class)")
  is_validation = np.zeros(len(labels), bool)
  is_validation[_balanced_order(labels, seed)[:num_examples]] = True
  return np.flatnonzero(~is_validation), np.flatnonzero(is_validation)


def balanced_subset(labels: np.ndarray, per_class: int, seed: int) -> np.ndarray:
  """Sorted indices of `per_class` examples of every class of `labels`, chosen by `seed`.

  Raises:
    ValueError: `per_class` is not positive, or some class has fewer examples.
  """
  labels = np.asarray(labels)
  classes, counts = np.unique(labels, return_counts=True)
  if per_class <= 0 or per_class > counts.min():
    smallest = classes[np.argmin(counts)]
    raise ValueError(f"train_examples_per_class={per_class} must be between 1 and "
                     f"{counts.min()} (class {smallest} has {counts.min()} training examples "
                     "once the validation split is held out); 0 trains on all of them")
  return np.sort(_balanced_order(labels, seed)[:per_class * len(classes)])


def streamed_splits(train_split: str, num_examples: int) -> tuple[str, str]:
  """TFDS split strings (train, validation) holding out the first `num_examples` examples."""
  return f"{train_split}[{num_examples}:]", f"{train_split}[:{num_examples}]"
