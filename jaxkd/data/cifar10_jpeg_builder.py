"""TFDS builder for the real CIFAR-10 images stored as JPEG files (`cifar10_jpeg.tar.gz`).

The archive holds `train/<class>/NNNN.jpg` (5,000 per class) and `test/<class>/NNNN.jpg`
(1,000 per class); classes in alphabetical order are CIFAR-10's label order, and the k-th file
of a class is that class's k-th image in the original order. The builder reads the tar from
TFDS's manual_dir in one pass without extracting it (checking its md5 first) and stores each
JPEG's bytes unchanged (no re-encoding, so no further loss), ordered by split, class, file
name: train example 5000 * label + k is the k-th image of that class. Decoding happens at read
time, with Pillow's exact result on both paths (`tfds_source.decode_image_bytes`).

manual_dir resolution: `DownloadConfig(manual_dir=...)` if given, else the environment variable
`JAXKD_MANUAL_DIR`, else `<repository root>/../shared/data` (see `default_manual_dir`).
"""

import hashlib
import os
import pathlib
import tarfile

import tensorflow_datasets as tfds

ARCHIVE_NAME = "cifar10_jpeg.tar.gz"
ARCHIVE_MD5 = "97a885386ac940ec95312e53cd0d3606"
MANUAL_DIR_ENV = "JAXKD_MANUAL_DIR"
CLASS_NAMES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
               "ship", "truck")


def default_manual_dir() -> pathlib.Path:
  """`$JAXKD_MANUAL_DIR`, else `<repository root>/../shared/data`."""
  if os.environ.get(MANUAL_DIR_ENV):
    return pathlib.Path(os.environ[MANUAL_DIR_ENV])
  repository_root = pathlib.Path(__file__).resolve().parents[2]
  return repository_root.parent / "shared" / "data"


class Cifar10Jpeg(tfds.core.GeneratorBasedBuilder):
  """CIFAR-10 from JPEG files (quality about 75): 50,000 train and 10,000 test images."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "JPEG bytes stored as found in the archive."}
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
      f"Place {ARCHIVE_NAME} (md5 {ARCHIVE_MD5}) in the manual_dir, or point the "
      f"{MANUAL_DIR_ENV} environment variable at its folder.")

  def _info(self) -> tfds.core.DatasetInfo:
    return self.dataset_info_from_configs(
        features=tfds.features.FeaturesDict({
            "image": tfds.features.Image(shape=(32, 32, 3), encoding_format="jpeg"),
            "label": tfds.features.ClassLabel(names=CLASS_NAMES),
        }),
        supervised_keys=("image", "label"),
        disable_shuffling=True,  # Store examples in generation order.
    )

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    archive = pathlib.Path(dl_manager.manual_dir) / ARCHIVE_NAME
    digest = hashlib.md5(archive.read_bytes()).hexdigest()
    if digest != ARCHIVE_MD5:
      raise ValueError(f"{archive} has md5 {digest}, expected {ARCHIVE_MD5}")
    files = _read_archive(archive)
    return {split: self._generate_examples(files[split]) for split in ("train", "test")}

  def _generate_examples(self, files: list[tuple[int, str, bytes]]):
    for index, (label, _, jpeg_bytes) in enumerate(sorted(files)):
      yield index, {"image": jpeg_bytes, "label": label}


def _read_archive(archive: pathlib.Path) -> dict[str, list[tuple[int, str, bytes]]]:
  """(label, file name, JPEG bytes) of every image, by split, in one pass over the gzip."""
  files = {"train": [], "test": []}
  label_of = {name: label for label, name in enumerate(CLASS_NAMES)}
  with tarfile.open(archive, "r:gz") as tar:
    for member in tar:
      parts = pathlib.PurePosixPath(member.name).parts
      if member.isfile() and len(parts) >= 3 and parts[-3] in files:
        files[parts[-3]].append(
            (label_of[parts[-2]], parts[-1], tar.extractfile(member).read()))
  return files
