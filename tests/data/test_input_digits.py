"""digits end to end through both input paths, device-path augmentation, and data errors."""

import dataclasses

import jax
import numpy as np
import pytest

import jaxkd.data
from jaxkd.data import datasets
from jaxkd.data import device_augment
from jaxkd.data import device_input
from jaxkd.data import tfds_source
from tests.data.input_test_config import data_mesh, make_config

PATHS = ("device", "tfdata")


@pytest.fixture(scope="module")
def digits_dir(tmp_path_factory):
  return str(tmp_path_factory.mktemp("tfds"))


@pytest.fixture(scope="module")
def digits_splits(digits_dir):
  builder = tfds_source.prepared_builder(datasets.dataset_source("digits"), digits_dir)
  return {split: tfds_source.load_split_arrays(builder, split) for split in ("train", "test")}


@pytest.fixture(scope="module", params=PATHS)
def digits_input(request, digits_dir, digits_splits):
  del digits_splits  # Built first, once.
  return jaxkd.data.create_input(make_config("digits", digits_dir, input_path=request.param),
                                 data_mesh())


def as_numpy(batch):
  return {key: np.asarray(value) for key, value in batch.items()}


def test_registry_lists_names_and_rejects_unknown():
  assert {"cifar100", "cifar10", "imagenet2012", "digits", "cifar10_jpeg",
          "fashion_mnist"} <= set(jaxkd.data.dataset_names())
  with pytest.raises(ValueError, match="valid datasets: cifar10, cifar100"):
    jaxkd.data.dataset_info("cifar1000")
  info = jaxkd.data.dataset_info("cifar100")
  assert (info.num_classes, info.image_shape, info.num_train, info.num_eval) == (
      100, (32, 32, 3), 50_000, 10_000)
  assert info.mean == (0.5071, 0.4867, 0.4408) and info.augmentation == "cifar"
  with pytest.raises(dataclasses.FrozenInstanceError):
    info.num_classes = 10


def test_digits_split_and_statistics(digits_splits):
  (train_images, train_labels), (test_images, test_labels) = (
      digits_splits["train"], digits_splits["test"])
  assert train_images.shape == (1437, 8, 8, 1) and test_images.shape == (360, 8, 8, 1)
  assert train_images.dtype == np.uint8 and train_images.max() == 255
  from sklearn.datasets import load_digits  # pylint: disable=g-import-not-at-top
  digits = load_digits()
  permutation = np.random.default_rng(0).permutation(1797)
  np.testing.assert_array_equal(train_labels, digits.target[permutation[:1437]])
  np.testing.assert_array_equal(test_labels, digits.target[permutation[1437:]])
  np.testing.assert_array_equal(
      test_images[..., 0], np.round(digits.images[permutation[1437:]] * 255 / 16))
  info = jaxkd.data.dataset_info("digits")
  assert (info.num_train, info.num_eval) == (1437, 360)
  np.testing.assert_allclose(train_images.mean() / 255, info.mean[0], atol=1e-4)
  np.testing.assert_allclose((train_images / 255).std(), info.std[0], atol=1e-4)


def test_train_batch_contract(digits_input):
  info = digits_input.info
  assert digits_input.steps_per_epoch == 1437 // 64
  batch = next(digits_input.train_batches(0))
  assert set(batch) == {"image", "label"}
  assert batch["image"].shape == (64, 8, 8, 1) and batch["image"].dtype == np.float32
  assert batch["label"].shape == (64,) and batch["label"].dtype == np.int32
  for value in batch.values():
    assert value.sharding.spec == jax.sharding.PartitionSpec("data")
    assert len(value.sharding.device_set) == 8
  images, labels = np.asarray(batch["image"]), np.asarray(batch["label"])
  low, high = -info.mean[0] / info.std[0], (1 - info.mean[0]) / info.std[0]
  assert images.min() >= low - 1e-5 and images.max() <= high + 1e-5
  assert images.min() < low + 1e-5 and images.max() > high - 1e-5  # Black and white present.
  assert labels.min() >= 0 and labels.max() < 10 and len(np.unique(labels)) > 5


def test_train_stream_is_a_function_of_seed_and_step(digits_input, digits_dir):
  steps = digits_input.steps_per_epoch
  stream = digits_input.train_batches(0)
  first_epochs = [as_numpy(next(stream)) for _ in range(steps + 2)]
  # An epoch sees distinct examples; the next epoch is shuffled differently.
  epoch0_labels = np.concatenate([b["label"] for b in first_epochs[:steps]])
  assert len(epoch0_labels) == steps * 64
  assert not np.array_equal(first_epochs[0]["label"], first_epochs[steps]["label"])
  same_seed = jaxkd.data.create_input(
      make_config("digits", digits_dir, input_path=digits_input.path), data_mesh())
  for start in (0, 3, steps + 1):  # Resuming, also across the epoch boundary.
    resumed = as_numpy(next(same_seed.train_batches(start)))
    np.testing.assert_array_equal(resumed["image"], first_epochs[start]["image"])
    np.testing.assert_array_equal(resumed["label"], first_epochs[start]["label"])
  other_seed = jaxkd.data.create_input(
      make_config("digits", digits_dir, input_path=digits_input.path, seed=1), data_mesh())
  assert not np.array_equal(np.asarray(next(other_seed.train_batches(0))["label"]),
                            first_epochs[0]["label"])


def test_eval_covers_each_example_once(digits_input, digits_splits):
  test_images, test_labels = digits_splits["test"]
  info = digits_input.info
  batches = [as_numpy(batch) for batch in digits_input.eval_batches()]
  assert digits_input.num_eval_batches == len(batches) == 3  # ceil(360 / 128)
  for batch in batches:
    assert batch["image"].shape == (128, 8, 8, 1) and batch["mask"].dtype == bool
  mask = np.concatenate([b["mask"] for b in batches])
  assert mask.sum() == 360 and mask[:360].all()
  images = np.concatenate([b["image"] for b in batches])[mask]
  labels = np.concatenate([b["label"] for b in batches])[mask]
  np.testing.assert_array_equal(labels, test_labels)
  expected = (test_images / 255.0 - info.mean[0]) / info.std[0]
  np.testing.assert_allclose(images, expected, atol=1e-5)


def test_crop_flip_parameters_cover_the_window():
  offsets, flips = device_augment.crop_flip_parameters(jax.random.key(0), 4000, pad=4)
  offsets, flips = np.asarray(offsets), np.asarray(flips)
  assert offsets.min() == 0 and offsets.max() == 8
  assert len(np.unique(offsets[:, 0])) == 9 and len(np.unique(offsets[:, 1])) == 9
  assert abs(flips.mean() - 0.5) < 0.03


def numpy_crop_flip_normalize(images, offsets, flips, mean, std):
  padded = np.pad(images, ((0, 0), (4, 4), (4, 4), (0, 0)))
  out = []
  for image, (dy, dx), flip in zip(padded, offsets, flips):
    crop = image[dy:dy + 32, dx:dx + 32]
    out.append(crop[:, ::-1] if flip else crop)
  return (np.stack(out) / 255.0 - np.array(mean)) / np.array(std)


def test_device_augmentation_matches_numpy_reconstruction():
  info = jaxkd.data.dataset_info("cifar10")
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, (40, 32, 32, 3), dtype=np.uint8)
  labels = rng.integers(0, 10, 40).astype(np.int32)
  pipeline = device_input.DeviceInput(
      info, train=(images, labels), evaluation={"test": (images[:8], labels[:8])}, batch_size=16,
      eval_batch_size=8, seed=7, mesh=data_mesh())
  shuffle_key, augment_key = device_input.stream_keys(7)
  stream = pipeline.train_batches(0)
  for step in range(pipeline.steps_per_epoch + 1):  # Into the second epoch.
    batch = as_numpy(next(stream))
    epoch, index = divmod(step, pipeline.steps_per_epoch)
    order = np.asarray(jax.random.permutation(jax.random.fold_in(shuffle_key, epoch), 40))
    positions = order[index * 16:(index + 1) * 16]
    offsets, flips = device_augment.crop_flip_parameters(
        jax.random.fold_in(augment_key, step), 16, pad=4)
    expected = numpy_crop_flip_normalize(images[positions], np.asarray(offsets),
                                         np.asarray(flips), info.mean, info.std)
    np.testing.assert_array_equal(batch["label"], labels[positions])
    np.testing.assert_allclose(batch["image"], expected, atol=1e-5)


def test_missing_standard_dataset_names_data_dir_and_fix(tmp_path, monkeypatch):
  monkeypatch.setenv("JAXKD_MANUAL_DIR", str(tmp_path / "no_archives_here"))
  with pytest.raises(jaxkd.data.MissingDatasetError) as error:
    jaxkd.data.create_input(make_config("cifar100", str(tmp_path)), data_mesh())
  message = str(error.value)
  assert "'cifar100'" in message and str(tmp_path) in message
  assert "tfds build cifar100" in message and "\n" not in message


def test_missing_cifar10_jpeg_archive(tmp_path, monkeypatch):
  monkeypatch.setenv("JAXKD_MANUAL_DIR", str(tmp_path / "no_archive_here"))
  with pytest.raises(jaxkd.data.MissingDatasetError,
                     match=r"'cifar10_jpeg'.*no_archive_here/cifar10_jpeg.tar.gz does not exist"):
    jaxkd.data.create_input(make_config("cifar10_jpeg", str(tmp_path)), data_mesh())


def test_bad_settings_fail_before_any_work(digits_dir):
  with pytest.raises(ValueError, match="multiple of the 8 devices"):
    jaxkd.data.create_input(make_config("digits", digits_dir, batch_size=60), data_mesh())
  with pytest.raises(ValueError, match="config.input_path must be one of auto, device, tfdata, got 'gpu'"):
    jaxkd.data.create_input(make_config("digits", digits_dir, input_path="gpu"), data_mesh())
  with pytest.raises(ValueError, match="use input_path='tfdata'"):
    jaxkd.data.create_input(make_config("imagenet2012", digits_dir, input_path="device"),
                            data_mesh())


@pytest.mark.parametrize("path", PATHS)
def test_a_training_subset_is_class_balanced_and_disjoint_from_validation(
    path, digits_dir, digits_splits):
  """Both paths train on the same 20 images of every class, none of them held out for
  validation, and the validation split is the one a run without a subset holds out."""
  config = make_config("digits", digits_dir, input_path=path, batch_size=40,
                       validation_examples=100, train_examples_per_class=20, train_subset_seed=3)
  data = jaxkd.data.create_input(config, data_mesh())
  assert data.steps_per_epoch == 200 // 40
  seen = [as_numpy(next(data.train_batches(s))) for s in range(data.steps_per_epoch)]
  labels = np.concatenate([b["label"] for b in seen])
  assert np.all(np.bincount(labels, minlength=10) == 20)
  selection = jaxkd.data.input_base.TrainingSelection(100, 0, 20, 3)
  (kept_images, kept_labels), (held_images, _) = jaxkd.data.input_base.split_arrays(
      digits_splits["train"], selection)
  assert np.all(np.bincount(kept_labels, minlength=10) == 20)
  kept_rows = {row.tobytes() for row in kept_images}
  assert not kept_rows & {row.tobytes() for row in held_images}
  _, unsubset_validation = jaxkd.data.input_base.split_arrays(
      digits_splits["train"], jaxkd.data.input_base.TrainingSelection(100, 0))
  np.testing.assert_array_equal(held_images, unsubset_validation[0])
  # Every image trained on (crop/flip-free digits: the normalised pixels) is in the subset.
  info = data.info
  pixels = np.concatenate([b["image"] for b in seen]) * info.std[0] + info.mean[0]
  trained_rows = {np.rint(p * 255).astype(np.uint8).tobytes() for p in pixels}
  assert trained_rows <= kept_rows


def test_a_subset_larger_than_a_class_is_one_line(digits_dir):
  with pytest.raises(ValueError, match="train_examples_per_class=500 must be between 1 and"):
    jaxkd.data.create_input(make_config("digits", digits_dir, train_examples_per_class=500),
                            data_mesh())


@pytest.mark.parametrize("path", PATHS)
def test_validation_split_is_held_out_of_training(path, digits_dir, digits_splits):
  """Both paths hold out the same 100 class-balanced training images, train on the other
  1,337, and evaluate each held-out image once."""
  data = jaxkd.data.create_input(
      make_config("digits", digits_dir, input_path=path, validation_examples=100,
                  validation_seed=0), data_mesh())
  assert data.eval_splits == ("test", "validation")
  assert data.steps_per_epoch == 1337 // 64
  batches = [as_numpy(b) for b in data.eval_batches("validation")]
  mask = np.concatenate([b["mask"] for b in batches])
  assert mask.sum() == 100
  labels = np.concatenate([b["label"] for b in batches])[mask]
  assert np.all(np.bincount(labels, minlength=10) == 10)
  train_images, train_labels = digits_splits["train"]
  _, held_out = jaxkd.data.input_base.split_arrays(
      (train_images, train_labels), jaxkd.data.input_base.TrainingSelection(100, 0))
  info = data.info
  images = np.concatenate([b["image"] for b in batches])[mask]
  np.testing.assert_allclose(images, (held_out[0] / 255.0 - info.mean[0]) / info.std[0],
                             atol=1e-5)
  np.testing.assert_array_equal(labels, held_out[1])
  train_labels_seen = np.concatenate([np.asarray(next(data.train_batches(s))["label"])
                                      for s in range(2)])
  assert len(train_labels_seen) == 128
  with pytest.raises(ValueError, match="no 'train' split"):
    next(data.eval_batches("train"))
