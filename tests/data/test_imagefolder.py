"""`imagefolder:<root>`: a tiny folder of generated images as a data set, end to end."""

import json
import os

import numpy as np
from PIL import Image
import pytest

from jaxkd import main as cli
from jaxkd import recipes, train
from jaxkd.data import datasets, imagefolder, tfds_source

DEFAULT_CONFIG = os.path.join(os.path.dirname(__file__), "..", "..", "configs", "default.py")
CLASSES = ("cat", "dog", "emu")
TRAIN_PER_CLASS, TEST_PER_CLASS, SIZE = 6, 2, 8


def make_folder(root, mode="RGB", size=(SIZE, SIZE), seed=0):
  """root/{train,test}/<class>/<i>.png of random pixels; returns {split: [(array, label)]}."""
  rng = np.random.default_rng(seed)
  channels = {"RGB": 3, "L": 1}[mode]
  written = {}
  for split, count in (("train", TRAIN_PER_CLASS), ("test", TEST_PER_CLASS)):
    written[split] = []
    for label, name in enumerate(CLASSES):
      os.makedirs(root / split / name)
      for i in range(count):
        pixels = rng.integers(0, 256, (size[1], size[0], channels), dtype=np.uint8)
        Image.fromarray(pixels.squeeze(-1) if channels == 1 else pixels, mode).save(
            root / split / name / f"{i}.png")
        written[split].append((pixels, label))
  return written


def name_of(root):
  return f"{imagefolder.PREFIX}{root}"


@pytest.fixture(autouse=True)
def forget_folders():
  """Each test starts with no folder statistics in memory (they are kept per process)."""
  imagefolder._KNOWN.clear()  # pylint: disable=protected-access
  yield
  imagefolder._KNOWN.clear()  # pylint: disable=protected-access


def test_info_is_taken_from_the_images(tmp_path):
  written = make_folder(tmp_path / "images")
  source = datasets.dataset_source(name_of(tmp_path / "images"), str(tmp_path / "tfds"))
  info = source.info
  assert info.name == name_of(tmp_path / "images")
  assert (info.num_classes, info.image_shape) == (3, (SIZE, SIZE, 3))
  assert (info.num_train, info.num_eval) == (3 * TRAIN_PER_CLASS, 3 * TEST_PER_CLASS)
  assert info.augmentation == "cifar" and source.fits_in_memory
  train = np.stack([pixels for pixels, _ in written["train"]]) / 255.0
  np.testing.assert_allclose(info.mean, train.mean(axis=(0, 1, 2)), rtol=1e-12)
  np.testing.assert_allclose(info.std, train.std(axis=(0, 1, 2)), rtol=1e-9)
  assert source.builder_input.class_names == CLASSES


def test_grey_images_make_a_one_channel_data_set(tmp_path):
  written = make_folder(tmp_path / "grey", mode="L")
  info = datasets.dataset_info(name_of(tmp_path / "grey"))
  assert info.image_shape == (SIZE, SIZE, 1)
  train = np.stack([pixels for pixels, _ in written["train"]]) / 255.0
  np.testing.assert_allclose(info.mean, [train.mean()], rtol=1e-12)


def test_images_over_64_px_get_no_augmentation(tmp_path):
  make_folder(tmp_path / "large", mode="L", size=(65, 40))
  info = datasets.dataset_info(name_of(tmp_path / "large"))
  assert info.image_shape == (40, 65, 1) and info.augmentation == "none"


def test_prepared_splits_hold_the_images_in_folder_order(tmp_path):
  written = make_folder(tmp_path / "images")
  rgba = np.random.default_rng(1).integers(0, 256, (SIZE, SIZE, 4), dtype=np.uint8)
  Image.fromarray(rgba, "RGBA").save(tmp_path / "images" / "test" / "emu" / "rgba.png")
  jpeg = np.random.default_rng(2).integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)
  Image.fromarray(jpeg).save(tmp_path / "images" / "test" / "emu" / "photo.jpg", quality=90)
  with Image.open(tmp_path / "images" / "test" / "emu" / "photo.jpg") as image:
    jpeg_as_pillow_reads_it = np.asarray(image)
  data_dir = str(tmp_path / "tfds")
  source = datasets.dataset_source(name_of(tmp_path / "images"), data_dir)
  builder = tfds_source.prepared_builder(source, data_dir)
  images, labels = tfds_source.load_split_arrays(builder, "train")
  np.testing.assert_array_equal(images, np.stack([p for p, _ in written["train"]]))
  np.testing.assert_array_equal(labels, [label for _, label in written["train"]])
  images, labels = tfds_source.load_split_arrays(builder, "test")
  # test/emu/ in name order: 0.png, 1.png, photo.jpg (stored as is), rgba.png (as RGB PNG).
  expected = [p for p, _ in written["test"]] + [jpeg_as_pillow_reads_it, rgba[..., :3]]
  np.testing.assert_array_equal(images, np.stack(expected))
  assert list(labels) == [label for _, label in written["test"]] + [2, 2]


def test_statistics_are_cached_in_the_data_dir_until_the_folder_changes(tmp_path, monkeypatch):
  make_folder(tmp_path / "images")
  data_dir = str(tmp_path / "tfds")
  first = datasets.dataset_info(name_of(tmp_path / "images"), data_dir)
  layout = imagefolder.scan(str(tmp_path / "images"))
  cached = json.loads(imagefolder.statistics_path(layout, data_dir).read_text())
  assert cached["fingerprint"] == layout.fingerprint and tuple(cached["mean"]) == first.mean

  imagefolder._KNOWN.clear()  # pylint: disable=protected-access  # A later process.
  def must_not_run(*args):
    raise AssertionError("statistics computed again")
  monkeypatch.setattr(imagefolder, "channel_statistics", must_not_run)
  assert datasets.dataset_info(name_of(tmp_path / "images"), data_dir) == first

  Image.new("RGB", (SIZE, SIZE), (255, 255, 255)).save(tmp_path / "images/train/cat/new.png")
  with pytest.raises(AssertionError, match="computed again"):
    datasets.dataset_info(name_of(tmp_path / "images"), data_dir)


def remove(path):
  for entry in sorted(path.rglob("*"), reverse=True):
    entry.rmdir() if entry.is_dir() else entry.unlink()
  path.rmdir()


def truncate(path):
  """Keeps the PNG's header (size and mode read fine) and drops its pixel data."""
  path.write_bytes(path.read_bytes()[:60])


BAD_FOLDERS = {
    "missing root": (lambda root: remove(root), "does not exist or is not a folder"),
    "no train": (lambda root: remove(root / "train"), "has no train/ folder"),
    "no test": (lambda root: remove(root / "test"), "has no test/ folder"),
    "different classes": (lambda root: (root / "test" / "dog").rename(root / "test" / "dingo"),
                          "differ (only in train: dog; only in test: dingo)"),
    "empty class": (lambda root: [p.unlink() for p in (root / "train" / "emu").iterdir()],
                    "train/emu holds no .png, .jpg or .jpeg images"),
    "no test images": (lambda root: [p.unlink() for p in (root / "test").rglob("*.png")],
                       "test holds no .png, .jpg or .jpeg images"),
    "sizes differ": (lambda root: Image.new("RGB", (9, 8)).save(root / "test/cat/wide.png"),
                     "differ in size: train/cat/0.png is 8x8, test/cat/wide.png is 9x8"),
    "broken image": (lambda root: (root / "train/dog/1.png").write_bytes(b"not a png"),
                     "train/dog/1.png is not a readable image"),
    "truncated image": (lambda root: truncate(root / "train/emu/2.png"),
                        "train/emu/2.png is not a readable image"),
}


@pytest.mark.parametrize("case", sorted(BAD_FOLDERS))
def test_a_bad_folder_is_one_line_saying_what_to_fix(tmp_path, case):
  root = tmp_path / "images"
  make_folder(root)
  spoil, message = BAD_FOLDERS[case]
  spoil(root)
  with pytest.raises(imagefolder.ImageFolderError) as error:
    datasets.dataset_info(name_of(root))
  assert message in str(error.value) and "\n" not in str(error.value)


def test_bad_folders_stop_the_command_line_before_training(tmp_path):
  for dataset, message in ((name_of(tmp_path / "absent"), "does not exist"),
                           ("imagefolder:", "names no folder"),
                           ("cifar1000", "or imagefolder:/path/to/your/images")):
    line = cli.command_line_error(["jaxkd.main", f"--config={DEFAULT_CONFIG}",
                                   f"--workdir={tmp_path / 'work'}",
                                   f"--config.dataset={dataset}"])
    assert line.startswith("jaxkd: ") and message in line and "\n" not in line


@pytest.mark.slow
def test_a_short_run_trains_on_the_folder(tmp_path):
  make_folder(tmp_path / "images")
  config = recipes.cifar_run("ce", "cnn_small", name_of(tmp_path / "images"))
  config.data_dir = str(tmp_path / "tfds")
  config.batch_size, config.eval_batch_size = 8, 8
  config.num_epochs, config.max_steps = 1, 2
  summary = train.train_and_evaluate(config, str(tmp_path / "work"))
  on_disk = json.loads((tmp_path / "work" / "summary.json").read_text())
  assert on_disk["dataset"] == name_of(tmp_path / "images") and on_disk["steps"] == 2
  assert 0.0 <= summary["final_test_accuracy"] <= 1.0
