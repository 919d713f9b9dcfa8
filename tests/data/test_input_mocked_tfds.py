"""cifar100 and imagenet2012 through the input paths, on `tfds.testing.mock_data` records.

The builders' metadata (splits of a few examples, TFRecord format) is written to a temporary
data_dir so that they count as prepared; mock_data then generates the records.
"""

import jax
import numpy as np
import pytest
import tensorflow as tf

import jaxkd.data
from jaxkd.data import tf_augment
from tests.data.input_test_config import data_mesh, make_config
from tests.mocked_tfds import NUM_EXAMPLES, mocked_dir  # pylint: disable=unused-import



def assert_sharded_over_devices(array):
  assert array.sharding.spec == jax.sharding.PartitionSpec("data")
  assert len(array.sharding.device_set) == 8
  assert array.addressable_shards[0].data.shape[0] == array.shape[0] // 8


@pytest.mark.parametrize("path", ["device", "tfdata"])
def test_cifar100(mocked_dir, path):
  config = make_config("cifar100", mocked_dir, input_path=path, batch_size=16,
                       eval_batch_size=32)
  data = jaxkd.data.create_input(config, data_mesh())
  assert data.path == path and data.steps_per_epoch == NUM_EXAMPLES // 16
  batch = next(data.train_batches(0))
  assert batch["image"].shape == (16, 32, 32, 3) and batch["image"].dtype == np.float32
  assert batch["label"].dtype == np.int32
  assert 0 <= int(batch["label"].min()) and int(batch["label"].max()) < 100
  assert_sharded_over_devices(batch["image"])
  assert_sharded_over_devices(batch["label"])
  eval_batches = list(data.eval_batches())
  assert len(eval_batches) == 2  # ceil(48 / 32)
  assert sum(int(b["mask"].sum()) for b in eval_batches) == NUM_EXAMPLES
  assert_sharded_over_devices(eval_batches[-1]["mask"])


def test_imagenet2012(mocked_dir):
  config = make_config("imagenet2012", mocked_dir, batch_size=16, eval_batch_size=16,
                       image_size=64)
  data = jaxkd.data.create_input(config, data_mesh())
  assert data.path == "tfdata" and data.info.image_shape == (64, 64, 3)
  assert data.steps_per_epoch == NUM_EXAMPLES // 16
  batch = next(data.train_batches(1))
  assert batch["image"].shape == (16, 64, 64, 3) and batch["label"].shape == (16,)
  assert_sharded_over_devices(batch["image"])
  assert 0 <= int(batch["label"].min()) and int(batch["label"].max()) < 1000
  first_eval = next(data.eval_batches())
  assert first_eval["image"].shape == (16, 64, 64, 3) and bool(first_eval["mask"].all())
  image = np.asarray(first_eval["image"])
  assert np.isfinite(image).all() and image.std() > 0.1


def test_imagenet2012_holds_out_the_first_training_examples(mocked_dir):
  """Streamed data holds out `train[:n]` (big_vision's minival) and trains on `train[n:]`."""
  config = make_config("imagenet2012", mocked_dir, batch_size=16, eval_batch_size=16,
                       image_size=32, validation_examples=16)
  data = jaxkd.data.create_input(config, data_mesh())
  assert data.eval_splits == ("test", "validation")
  assert data.steps_per_epoch == (NUM_EXAMPLES - 16) // 16
  validation = list(data.eval_batches("validation"))
  assert len(validation) == 1 and int(validation[0]["mask"].sum()) == 16
  assert sum(int(b["mask"].sum()) for b in data.eval_batches("test")) == NUM_EXAMPLES


def test_tf_cifar_crop_is_a_padded_window_maybe_flipped():
  image = np.random.default_rng(0).integers(1, 256, (32, 32, 3), dtype=np.uint8)
  padded = np.pad(image, ((4, 4), (4, 4), (0, 0)))
  windows = [w for dy in range(9) for dx in range(9)
             for w in (padded[dy:dy + 32, dx:dx + 32], padded[dy:dy + 32, dx:dx + 32][:, ::-1])]
  seen = set()
  for number in range(40):
    out = tf_augment.cifar_crop_and_flip(tf.constant(image),
                                         tf.constant([5, number], tf.int64)).numpy()
    matches = [i for i, window in enumerate(windows) if np.array_equal(out, window)]
    assert matches
    seen.update(matches)
    again = tf_augment.cifar_crop_and_flip(tf.constant(image),
                                           tf.constant([5, number], tf.int64)).numpy()
    np.testing.assert_array_equal(out, again)
  assert len(seen) > 20 and any(i % 2 for i in seen) and any(i % 2 == 0 for i in seen)


def test_imagenet_eval_resize_and_centre_crop():
  image = np.zeros((300, 400, 3), np.uint8)
  image[:, 200:] = 255  # Right half white: the centre crop straddles the edge.
  encoded = tf.io.encode_png(image)
  crop = tf_augment.resize_and_centre_crop(encoded, 224).numpy()
  assert crop.shape == (224, 224, 3)  # 300x400 -> 256x341, centre 224x224.
  np.testing.assert_allclose(crop[:, :100], 0, atol=1)
  np.testing.assert_allclose(crop[:, 124:], 255, atol=1)
