"""TFDS builder for scikit-learn's 8x8 handwritten digits: real data that needs no download.

`sklearn.datasets.load_digits()` ships 1,797 grey images whose pixels count ink on a 0..16
scale. The builder rescales them to uint8 as round(v * 255 / 16) and splits them once, by a
fixed permutation (`numpy.random.default_rng(0).permutation(1797)`): the first 1,437 indices
(80 %) are `train`, the last 360 are `test`, each stored in permutation order. Images are
stored as PNG, so Pillow decodes them where TensorFlow is absent.
"""

import numpy as np
import tensorflow_datasets as tfds

NUM_EXAMPLES = 1797
NUM_TRAIN = 1437
SPLIT_SEED = 0


def split_indices() -> dict[str, np.ndarray]:
  """The fixed train/test partition of `load_digits()` indices."""
  permutation = np.random.default_rng(SPLIT_SEED).permutation(NUM_EXAMPLES)
  return {"train": permutation[:NUM_TRAIN], "test": permutation[NUM_TRAIN:]}


class SklearnDigits(tfds.core.GeneratorBasedBuilder):
  """scikit-learn digits as an 8x8x1 uint8 image classification data set."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "80/20 split by a fixed permutation (seed 0)."}

  def _info(self) -> tfds.core.DatasetInfo:
    return self.dataset_info_from_configs(
        features=tfds.features.FeaturesDict({
            "image": tfds.features.Image(shape=(8, 8, 1), encoding_format="png"),
            "label": tfds.features.ClassLabel(num_classes=10),
        }),
        supervised_keys=("image", "label"),
        disable_shuffling=True,  # Store examples in generation order.
        homepage="https://scikit-learn.org/stable/datasets/toy_dataset.html",
    )

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    del dl_manager  # The data ships inside the scikit-learn wheel.
    return {name: self._generate_examples(indices)
            for name, indices in split_indices().items()}

  def _generate_examples(self, indices: np.ndarray):
    from PIL import Image  # pylint: disable=g-import-not-at-top
    from sklearn.datasets import load_digits  # pylint: disable=g-import-not-at-top
    digits = load_digits()
    pixels = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)
    for position, index in enumerate(indices):  # Keys set the stored order.
      yield position, {
          "image": Image.fromarray(pixels[index], mode="L"),
          "label": int(digits.target[index]),
      }
