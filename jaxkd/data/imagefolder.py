"""Your own images as a data set: `--config.dataset=imagefolder:/path/to/root`.

The root holds one folder per class in each split, the same class folders in both:

    root/train/<class>/*.png|*.jpg|*.jpeg
    root/test/<class>/*.png|*.jpg|*.jpeg

Labels follow the class folders' names in sorted order; files directly inside a class folder
are taken (hidden files and folders are skipped). Everything else is taken from the images:
- size and channels: all images must have one size (H, W); the data set is grey (1 channel)
  when every image is grey (Pillow modes 1, L, LA), else RGB (3 channels: alpha dropped,
  palettes and grey images expanded);
- normalisation: the per-channel mean and standard deviation of the training images scaled to
  [0, 1], computed once and cached with the folder's fingerprint (paths, sizes and mtimes of
  its files) in `<data_dir>/jaxkd_image_folder/<config>/statistics.json`;
- augmentation: CIFAR's pad-4 random crop + flip for images up to 64 px a side, none above
  (ImageNet's inception crop needs JPEGs streamed through tf.data; not wired for folders);
- input path: device-resident when both splits take at most 2 GiB as uint8, tf.data otherwise.

The images are stored once as a TFDS data set of ours (`image_folder_builder`, one builder
config per folder fingerprint), so both input paths, the held-out validation split and
machines without TensorFlow work as for the other data sets. Adding, removing or touching a
file changes the fingerprint: the folder is read and prepared again.

A folder that cannot be used stops the run with one line (ImageFolderError, a ValueError).
"""

import dataclasses
import hashlib
import json
import os
import pathlib
import re
from typing import Optional

from absl import logging
import numpy as np

from jaxkd.data import datasets

PREFIX = "imagefolder:"
BUILDER_NAME = "jaxkd_image_folder"  # The TFDS name of image_folder_builder.JaxkdImageFolder.
SPLITS = ("train", "test")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
GREY_MODES = ("1", "L", "LA")
CIFAR_AUGMENTATION_MAX_SIZE = 64
DEVICE_INPUT_MAX_BYTES = 2 * 2**30
STATISTICS_FILE = "statistics.json"
_SUFFIX_TEXT = ".png, .jpg or .jpeg"
_LAYOUT_TEXT = f"train/<class>/<image> and test/<class>/<image> ({_SUFFIX_TEXT})"


class ImageFolderError(ValueError):
  """An image folder that cannot be used as a data set; the message says what to fix."""


@dataclasses.dataclass(frozen=True)
class FolderLayout:
  """The files of an image folder, as found on disk.

  Attributes:
    root: the folder's absolute path.
    class_names: the class folders' names, sorted; label i is class_names[i].
    train: (path relative to root, label) of each training image, by class then file name.
    test: the same for the test images.
    fingerprint: 16 hex digits of the root, and of every image's path, size and mtime.
  """
  root: str
  class_names: tuple[str, ...]
  train: tuple[tuple[str, int], ...]
  test: tuple[tuple[str, int], ...]
  fingerprint: str

  def files(self, split: str) -> tuple[tuple[str, int], ...]:
    return {"train": self.train, "test": self.test}[split]

  @property
  def config_name(self) -> str:
    """The TFDS builder config of this folder: its base name (letters, digits, _) + fingerprint."""
    base = re.sub(r"[^a-z0-9]+", "_", os.path.basename(self.root).lower()).strip("_")
    return f"{base or 'root'}_{self.fingerprint}"


@dataclasses.dataclass(frozen=True)
class FolderImages:
  """What the images of a folder are: shape and per-channel statistics of the training images."""
  image_shape: tuple[int, int, int]
  mean: tuple[float, ...]
  std: tuple[float, ...]


def is_image_folder(name: str) -> bool:
  """Whether the data set name is `imagefolder:<root>`."""
  return name.startswith(PREFIX)


def _visible(entries) -> list[pathlib.Path]:
  return sorted(entry for entry in entries if not entry.name.startswith("."))


def _is_image(path: pathlib.Path) -> bool:
  return path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES


def scan(root: str) -> FolderLayout:
  """The layout of the folder `root`; ImageFolderError (one line) if it cannot be used."""
  if not root:
    raise ImageFolderError(f"'{PREFIX}' names no folder: give "
                           f"--config.dataset={PREFIX}/path/to/root, the root holding "
                           + _LAYOUT_TEXT)
  path = pathlib.Path(root).expanduser().resolve()
  if not path.is_dir():
    raise ImageFolderError(f"image folder {path} does not exist or is not a folder: give "
                           f"--config.dataset={PREFIX}<folder holding {_LAYOUT_TEXT}>")
  classes = {}
  for split in SPLITS:
    if not (path / split).is_dir():
      raise ImageFolderError(f"image folder {path} has no {split}/ folder: it must hold "
                             + _LAYOUT_TEXT)
    classes[split] = [entry.name for entry in _visible((path / split).iterdir())
                      if entry.is_dir()]
    if not classes[split]:
      raise ImageFolderError(f"{path / split} holds no class folders: put each class's images "
                             f"in {split}/<class>/")
  only_train = sorted(set(classes["train"]) - set(classes["test"]))
  only_test = sorted(set(classes["test"]) - set(classes["train"]))
  if only_train or only_test:
    raise ImageFolderError(
        f"the class folders of {path / 'train'} and {path / 'test'} differ (only in train: "
        f"{', '.join(only_train) or '-'}; only in test: {', '.join(only_test) or '-'}): give "
        "both splits the same class folders (an empty test/<class>/ is fine)")
  class_names = tuple(classes["train"])
  digest = hashlib.sha256(str(path).encode())
  files = {}
  for split in SPLITS:
    files[split] = []
    for label, name in enumerate(class_names):
      images = [entry for entry in _visible((path / split / name).iterdir()) if _is_image(entry)]
      if split == "train" and not images:
        raise ImageFolderError(f"{path / split / name} holds no {_SUFFIX_TEXT} images: add some, "
                               "or remove the class folder from train/ and test/")
      for image in images:
        relative = image.relative_to(path).as_posix()
        stat = image.stat()
        digest.update(f"{relative}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
        files[split].append((relative, label))
  if not files["test"]:
    raise ImageFolderError(f"{path / 'test'} holds no {_SUFFIX_TEXT} images: the test split "
                           "needs at least one")
  return FolderLayout(str(path), class_names, tuple(files["train"]), tuple(files["test"]),
                      digest.hexdigest()[:16])


def _unreadable(path: str, error: Exception) -> ImageFolderError:
  return ImageFolderError(f"{path} is not a readable image ({type(error).__name__}: {error}): "
                          "replace or remove it")


def _open(root: str, relative: str):
  """The image at root/relative, opened (its header read) by Pillow."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  try:
    return Image.open(os.path.join(root, relative))
  except Exception as error:  # pylint: disable=broad-except
    raise _unreadable(os.path.join(root, relative), error) from error


def target_mode(channels: int) -> str:
  """The Pillow mode images are converted to: 'L' (grey) or 'RGB'."""
  return "L" if channels == 1 else "RGB"


def image_shape(layout: FolderLayout) -> tuple[int, int, int]:
  """(H, W, C) shared by every image, read from the files' headers; ImageFolderError if the
  sizes differ."""
  first, size, grey = None, None, True
  for relative, _ in layout.train + layout.test:
    with _open(layout.root, relative) as image:
      if size is None:
        first, size = relative, image.size
      elif image.size != size:
        raise ImageFolderError(
            f"the images of {layout.root} differ in size: {first} is {size[0]}x{size[1]}, "
            f"{relative} is {image.size[0]}x{image.size[1]} (width x height): resize them all "
            "to one size first (e.g. ImageMagick's `mogrify -resize 32x32! */*/*.png`)")
      grey = grey and image.mode in GREY_MODES
  return (size[1], size[0], 1 if grey else 3)


def decoded(root: str, relative: str, channels: int) -> np.ndarray:
  """The image at root/relative as uint8 (H, W, channels), as the input pipeline sees it."""
  with _open(root, relative) as image:
    try:
      pixels = np.asarray(image.convert(target_mode(channels)), dtype=np.uint8)
    except Exception as error:  # pylint: disable=broad-except
      raise _unreadable(os.path.join(root, relative), error) from error
  return pixels.reshape(pixels.shape[:2] + (channels,))


def channel_statistics(layout: FolderLayout,
                       channels: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
  """Per-channel (mean, std) of the training images' pixels scaled to [0, 1] (std over all
  pixels, ddof 0), summed in float64 one image at a time."""
  total = np.zeros(channels)
  total_squares = np.zeros(channels)
  count = 0
  for relative, _ in layout.train:
    pixels = decoded(layout.root, relative, channels).astype(np.float64) / 255.0
    total += pixels.sum(axis=(0, 1))
    total_squares += np.square(pixels).sum(axis=(0, 1))
    count += pixels.shape[0] * pixels.shape[1]
  mean = total / count
  std = np.sqrt(np.maximum(total_squares / count - np.square(mean), 0.0))
  return tuple(float(m) for m in mean), tuple(float(s) for s in std)


def statistics_path(layout: FolderLayout, data_dir: str) -> pathlib.Path:
  """Where the folder's `FolderImages` are cached in `data_dir` ('' = TFDS's default)."""
  from jaxkd.data import tfds_source  # pylint: disable=g-import-not-at-top
  return tfds_source.data_dir_root(data_dir) / BUILDER_NAME / layout.config_name / STATISTICS_FILE


def _read_cached(path: pathlib.Path, layout: FolderLayout) -> Optional[FolderImages]:
  try:
    cached = json.loads(path.read_text())
    if cached.get("fingerprint") != layout.fingerprint:
      return None
    return FolderImages(tuple(cached["image_shape"]), tuple(cached["mean"]), tuple(cached["std"]))
  except (OSError, ValueError, KeyError, TypeError):
    return None


def _write_cached(path: pathlib.Path, layout: FolderLayout, images: FolderImages) -> None:
  import jax  # pylint: disable=g-import-not-at-top
  if jax.process_index() != 0:
    return
  try:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(f".tmp{os.getpid()}")
    temporary.write_text(json.dumps({"root": layout.root, "fingerprint": layout.fingerprint,
                                     **dataclasses.asdict(images)}, indent=2))
    os.replace(temporary, path)
  except OSError as error:
    logging.warning("Could not cache the statistics of %s in %s (%s): they are computed again "
                    "next time.", layout.root, path, error)


def _compute(layout: FolderLayout) -> FolderImages:
  shape = image_shape(layout)
  logging.info("Image folder %s: %d classes, %d train and %d test images of %s; computing the "
               "per-channel mean and std of the training images.", layout.root,
               len(layout.class_names), len(layout.train), len(layout.test), shape)
  mean, std = channel_statistics(layout, shape[-1])
  return FolderImages(shape, mean, std)


_KNOWN: dict[str, FolderImages] = {}  # By fingerprint: this process's folders.


def folder_images(layout: FolderLayout, data_dir: Optional[str] = None) -> FolderImages:
  """The folder's `FolderImages`: from this process's memory, else from the cache in
  `data_dir` ('' = TFDS's default) when one is given, else computed (and cached there)."""
  if layout.fingerprint in _KNOWN:
    return _KNOWN[layout.fingerprint]
  path = None if data_dir is None else statistics_path(layout, data_dir)
  images = None if path is None else _read_cached(path, layout)
  if images is None:
    images = _compute(layout)
    if path is not None:
      _write_cached(path, layout, images)
  _KNOWN[layout.fingerprint] = images
  return images


def folder_source(name: str, data_dir: Optional[str] = None) -> datasets.DatasetSource:
  """The `DatasetSource` of `imagefolder:<root>`, its `DatasetInfo` taken from the images.

  Raises:
    ImageFolderError: the folder cannot be used (one line saying what to fix).
  """
  layout = scan(name[len(PREFIX):])
  images = folder_images(layout, data_dir)
  height, width, channels = images.image_shape
  augmentation = "cifar" if max(height, width) <= CIFAR_AUGMENTATION_MAX_SIZE else "none"
  num_bytes = (len(layout.train) + len(layout.test)) * height * width * channels
  info = datasets.DatasetInfo(name, len(layout.class_names), images.image_shape,
                              len(layout.train), len(layout.test), images.mean, images.std,
                              augmentation)
  return datasets.DatasetSource(
      info=info, tfds_name=BUILDER_NAME, train_split="train", eval_split="test",
      fits_in_memory=num_bytes <= DEVICE_INPUT_MAX_BYTES,
      builder_module="jaxkd.data.image_folder_builder",
      how_to_get=f"check that every image under {layout.root} can be read",
      builder_input=layout)
