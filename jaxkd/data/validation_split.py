"""A validation split held out of the training split: fixed, class-balanced, seeded.

Model selection ("best" checkpoints, early stopping, hyperparameter choice) must never look
at the test split. `holdout(labels, n, seed)` picks n training examples so that every class
gives ⌊n / C⌋ or ⌈n / C⌉ of them: each class's examples are ranked by a seeded permutation,
and the examples of rank 0 of every class come first, then those of rank 1, and so on
(classes in a seeded order within a rank). The choice depends only on (labels, n, seed), not
on the run's seed, so every run of a study is selected on the same images.

Data sets streamed from files (ImageNet) cannot be ranked by label without a full pass;
they hold out the first n examples of the split instead (`streamed_splits`), as big_vision's
`train[:n]` "minival" does.
"""

import numpy as np


def holdout(labels: np.ndarray, num_examples: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
  """(train indices, validation indices) of a split with `labels`; both sorted ascending.

  Raises:
    ValueError: `num_examples` is negative or leaves fewer than one training example per class.
  """
  labels = np.asarray(labels)
  classes = np.unique(labels)
  if num_examples < 0 or num_examples > len(labels) - len(classes):
    raise ValueError(f"validation_examples={num_examples} must be between 0 and "
                     f"{len(labels) - len(classes)} (the {len(labels)} training examples less "
                     "one per class)")
  rng = np.random.default_rng(seed)
  rank = np.empty(len(labels), np.int64)
  for label in classes:
    members = np.flatnonzero(labels == label)
    rank[rng.permutation(members)] = np.arange(len(members))
  class_order = np.empty(int(classes.max()) + 1, np.int64)
  class_order[classes] = rng.permutation(len(classes))
  chosen = np.lexsort((class_order[labels], rank))[:num_examples]
  is_validation = np.zeros(len(labels), bool)
  is_validation[chosen] = True
  return np.flatnonzero(~is_validation), np.flatnonzero(is_validation)


def streamed_splits(train_split: str, num_examples: int) -> tuple[str, str]:
  """TFDS split strings (train, validation) holding out the first `num_examples` examples."""
  return f"{train_split}[{num_examples}:]", f"{train_split}[:{num_examples}]"
