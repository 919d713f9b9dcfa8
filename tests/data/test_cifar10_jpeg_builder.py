"""cifar10_jpeg built once from the real archive: counts, label order, pixels, statistics.

Skipped when cifar10_jpeg.tar.gz is not in the manual_dir (see `default_manual_dir`). The
module builds one copy in a temporary data_dir (about 10-20 s on 2 cores) that all tests share.
"""

import io
import tarfile

import numpy as np
import pytest
from PIL import Image

import jaxkd.data
from jaxkd.data import cifar10_jpeg_builder
from jaxkd.data import datasets
from jaxkd.data import tfds_source
from tests.data.input_test_config import data_mesh, make_config

ARCHIVE = cifar10_jpeg_builder.default_manual_dir() / cifar10_jpeg_builder.ARCHIVE_NAME

pytestmark = pytest.mark.skipif(
    not ARCHIVE.exists(), reason=f"{ARCHIVE} is absent (set JAXKD_MANUAL_DIR to its folder)")


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
  data_dir = str(tmp_path_factory.mktemp("tfds"))
  builder = tfds_source.prepared_builder(datasets.dataset_source("cifar10_jpeg"), data_dir)
  return data_dir, builder


@pytest.fixture(scope="module")
def train_arrays(prepared):
  return tfds_source.load_split_arrays(prepared[1], "train")


def pillow_pixels(member_names):
  found = {}
  with tarfile.open(ARCHIVE, "r:gz") as tar:
    for member in tar:
      if member.name in member_names:
        found[member.name] = np.asarray(Image.open(io.BytesIO(tar.extractfile(member).read())))
  return [found[name] for name in member_names]


@pytest.mark.slow
def test_splits_and_label_order(prepared, train_arrays):
  builder = prepared[1]
  assert builder.info.splits["train"].num_examples == 50_000
  assert builder.info.splits["test"].num_examples == 10_000
  assert builder.info.features["label"].names[:3] == ["airplane", "automobile", "bird"]
  images, labels = train_arrays
  assert images.shape == (50_000, 32, 32, 3) and images.dtype == np.uint8
  np.testing.assert_array_equal(labels, np.repeat(np.arange(10, dtype=np.int32), 5000))


@pytest.mark.slow
def test_pixels_are_pillows_decoding_of_the_archive(train_arrays):
  images, _ = train_arrays
  names = ["train/airplane/0000.jpg", "train/airplane/0001.jpg", "train/truck/4999.jpg"]
  for index, expected in zip((0, 1, 49_999), pillow_pixels(names)):
    np.testing.assert_array_equal(images[index], expected)


@pytest.mark.slow
def test_channel_statistics_match_readme(train_arrays):
  images, _ = train_arrays
  info = jaxkd.data.dataset_info("cifar10_jpeg")
  sample = images[::7].reshape(-1, 3) / 255.0
  np.testing.assert_allclose(sample.mean(0), info.mean, atol=2e-3)
  np.testing.assert_allclose(sample.std(0), info.std, atol=2e-3)
  np.testing.assert_allclose(sample.mean(0), [0.4913, 0.4821, 0.4465], atol=2e-3)


@pytest.mark.slow
def test_create_input_on_prepared_copy(prepared):
  # tf.data path: the device path would copy the split to each of the 8 simulated devices.
  config = make_config("cifar10_jpeg", prepared[0], input_path="tfdata")
  data = jaxkd.data.create_input(config, data_mesh())
  assert data.path == "tfdata" and data.steps_per_epoch == 50_000 // 64
  assert data.num_eval_batches == 79  # ceil(10000 / 128)
  batch = next(data.train_batches(0))
  assert batch["image"].shape == (64, 32, 32, 3) and len(batch["image"].sharding.device_set) == 8
