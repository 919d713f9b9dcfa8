"""Opening TFDS builders, preparing our own ones, and reading a split with or without TF.

Formats. TFDS's standard builders write TFRecord files (`tfds build NAME`), which only
tf.data reads; our builders (`digits`, `cifar10_jpeg`) write ArrayRecord files, which
`tfds.data_source` reads without TensorFlow (Pillow decodes the PNG/JPEG bytes). With
TensorFlow present an ArrayRecord split is read as raw records through the data source and
decoded by TensorFlow (CIFAR-10 train: about 4 s against 15 s for Pillow on 2 cores).
On a machine without TensorFlow, standard data sets must therefore have been prepared with
`--file_format=array_record` (or converted with `tfds convert_format`).

Missing data raises `MissingDatasetError` naming the data set, the data_dir and the way to
get it. Builders of our own are built on first use; `cifar100` and `cifar10` are prepared on
first use by TFDS's own builder from their official archive when it is in `$JAXKD_MANUAL_DIR`
(`jaxkd.data.prepare`); standard builders are never downloaded from inside a run (a failing
download retries for minutes, and every host would try it).
"""

import contextlib
import fcntl
import functools
import importlib
import io
import pathlib
import tempfile
from typing import Any, Callable, Iterator, Optional

from absl import logging
import jax
from jax.experimental import multihost_utils
import numpy as np
import tensorflow_datasets as tfds

from jaxkd.data import datasets

_ARRAY_RECORD = tfds.core.FileFormat.ARRAY_RECORD
_TFRECORD = tfds.core.FileFormat.TFRECORD
_DATA_SOURCE_CHUNK = 2048


class MissingDatasetError(RuntimeError):
  """A data set is neither prepared in its data_dir nor buildable here."""


@functools.cache
def tensorflow_available() -> bool:
  """Whether TensorFlow imports (GPU machines often have JAX but no TF)."""
  try:
    importlib.import_module("tensorflow")
  except ImportError:
    return False
  return True


def _data_dir_text(builder: tfds.core.DatasetBuilder) -> str:
  return str(builder.data_dir_root)


def data_dir_root(data_dir: str) -> pathlib.Path:
  """The folder a builder opened over `data_dir` stores its data sets in ('' = TFDS's default,
  `$TFDS_DATA_DIR` or ~/tensorflow_datasets)."""
  return pathlib.Path(data_dir or tfds.core.constants.DATA_DIR).expanduser()


@contextlib.contextmanager
def _scratch_tempdir() -> Iterator[None]:
  """Points `tempfile` at a fresh folder, removed afterwards with whatever was left in it."""
  with tempfile.TemporaryDirectory(prefix="jaxkd_tfds_") as scratch:
    previous, tempfile.tempdir = tempfile.tempdir, scratch
    try:
      yield
    finally:
      tempfile.tempdir = previous


def open_builder(source: datasets.DatasetSource, data_dir: str) -> tfds.core.DatasetBuilder:
  """The TFDS builder of `source` over `data_dir` ('' = TFDS's default data_dir).

  For data not yet prepared, TFDS makes a `tempfile.mkdtemp('tfds')` folder for info from
  GCS (`DatasetInfo.initialize_from_bucket`) and never removes it: it is made in a scratch
  folder, removed here. A builder of ours with one config per data set (image folders) gets
  the config its module's `builder_config(source)` makes.
  """
  options = {"data_dir": data_dir or None, "try_gcs": False}
  if source.builder_module is not None:
    module = importlib.import_module(source.builder_module)  # Registers the builder with TFDS.
    options["file_format"] = _ARRAY_RECORD
    if source.builder_input is not None:
      options["config"] = module.builder_config(source)
  with _scratch_tempdir():
    return tfds.builder(source.tfds_name, **options)


def _not_prepared(source: datasets.DatasetSource, builder: tfds.core.DatasetBuilder,
                  reason: str = "") -> MissingDatasetError:
  return MissingDatasetError(
      f"data set '{source.info.name}' is not prepared in data_dir {_data_dir_text(builder)}"
      f"{reason}: {source.how_to_get}")


@contextlib.contextmanager
def _without_progress_output() -> Iterator[None]:
  """TFDS's progress bars and its 'Downloading and preparing' lines kept off the console,
  which shows jaxkd's own lines (`jaxkd.console`); TFDS's bars are on again after."""
  tfds.display_progress_bar(False)
  try:
    with contextlib.redirect_stdout(io.StringIO()):
      yield
  finally:
    tfds.display_progress_bar(True)


def _build_own(source: datasets.DatasetSource, builder: tfds.core.DatasetBuilder,
               config: tfds.download.DownloadConfig) -> None:
  try:
    with _without_progress_output():
      builder.download_and_prepare(download_config=config, file_format=_ARRAY_RECORD)
  except Exception as error:  # pylint: disable=broad-except
    raise MissingDatasetError(
        f"data set '{source.info.name}' could not be built in data_dir "
        f"{_data_dir_text(builder)} ({type(error).__name__}: {error}): "
        f"{source.how_to_get}") from error


def _prepare_from_archive(source: datasets.DatasetSource, builder: tfds.core.DatasetBuilder,
                          archive: pathlib.Path) -> None:
  from jaxkd.data import prepare  # pylint: disable=g-import-not-at-top
  logging.info("Data set '%s' is not prepared in data_dir %s: preparing it once from %s.",
               source.info.name, _data_dir_text(builder), archive)
  try:
    with _without_progress_output():
      prepare.prepare(source.tfds_name, archive, _data_dir_text(builder))
  except prepare.PrepareError as error:
    raise MissingDatasetError(
        f"data set '{source.info.name}' could not be prepared in data_dir "
        f"{_data_dir_text(builder)} from {archive} ({error}): {source.how_to_get}") from error


def _preparation(source: datasets.DatasetSource,
                 builder: tfds.core.DatasetBuilder) -> Callable[[], None]:
  """What prepares `source` in the builder's data_dir here; MissingDatasetError if nothing can.

  Our own builders are built (those reading an archive define ARCHIVE_NAME and
  default_manual_dir()); standard builders that `jaxkd.data.prepare` knows are prepared from
  their official archive in the manual dir (resolved as `cifar10_jpeg_builder` resolves it);
  other standard builders are never downloaded.
  """
  if source.builder_module is not None:
    module = importlib.import_module(source.builder_module)
    config = tfds.download.DownloadConfig()
    if hasattr(module, "ARCHIVE_NAME"):
      archive = module.default_manual_dir() / module.ARCHIVE_NAME
      if not archive.exists():
        raise _not_prepared(source, builder, f" and {archive} does not exist")
      config = tfds.download.DownloadConfig(manual_dir=str(archive.parent))
    return functools.partial(_build_own, source, builder, config)
  from jaxkd.data import cifar10_jpeg_builder, prepare  # pylint: disable=g-import-not-at-top
  layout = prepare.LAYOUTS.get(source.tfds_name)
  if layout is None:
    raise _not_prepared(source, builder)
  archive = cifar10_jpeg_builder.default_manual_dir() / layout.archive_name
  if not archive.exists():
    raise _not_prepared(source, builder, f" and {archive} does not exist")
  return functools.partial(_prepare_from_archive, source, builder, archive)


def prepared_builder(source: datasets.DatasetSource, data_dir: str) -> tfds.core.DatasetBuilder:
  """Opens the builder and makes sure its data exists, preparing it here if it can.

  Our own builders are built, and `cifar100`/`cifar10` are prepared from their official
  archive in `$JAXKD_MANUAL_DIR` (default `<repository>/../shared/data`), once: later runs
  find them prepared. On several hosts, process 0 prepares first and the others wait, so that
  a shared data_dir is written once; a host whose (local) data_dir is still empty then
  prepares its own copy. Processes of one machine sharing a data_dir (parallel runs, test
  workers) take turns through a lock file, and only the first one prepares.
  """
  builder = open_builder(source, data_dir)
  if builder.is_prepared():
    return builder
  prepare_here = _preparation(source, builder)
  if jax.process_count() > 1:
    if jax.process_index() == 0:
      with _local_lock(builder):
        if not open_builder(source, data_dir).is_prepared():
          prepare_here()
    multihost_utils.sync_global_devices(f"jaxkd_build_{source.tfds_name}")
  with _local_lock(builder):
    builder = open_builder(source, data_dir)
    if not builder.is_prepared():
      _preparation(source, builder)()
  return open_builder(source, data_dir)


@contextlib.contextmanager
def _local_lock(builder: tfds.core.DatasetBuilder) -> Iterator[None]:
  """An exclusive lock on `<data_dir>/.jaxkd_prepare_<name>.lock` for this machine's processes."""
  root = pathlib.Path(str(builder.data_dir_root))
  root.mkdir(parents=True, exist_ok=True)
  with open(root / f".jaxkd_prepare_{builder.name}.lock", "w") as lock_file:
    fcntl.flock(lock_file, fcntl.LOCK_EX)
    try:
      yield
    finally:
      fcntl.flock(lock_file, fcntl.LOCK_UN)


def _available_formats(builder: tfds.core.DatasetBuilder) -> set[Any]:
  return set(builder.info.available_file_formats())


def decode_image_bytes(encoded, channels: int):
  """Decodes PNG or JPEG bytes to uint8 (H, W, channels) exactly as Pillow does.

  TFDS's own TF decoder uses libjpeg's default DCT, which differs from Pillow by up to 5/255
  on CIFAR-10 JPEGs; `INTEGER_ACCURATE` with fancy upscaling reproduces Pillow (and so
  torchvision and the no-TensorFlow path) bit for bit.
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  image = tf.cond(
      tf.io.is_jpeg(encoded),
      lambda: tf.io.decode_jpeg(encoded, channels=channels, dct_method="INTEGER_ACCURATE"),
      lambda: tf.io.decode_png(encoded, channels=channels, dtype=tf.uint8))
  return image


def tf_examples(builder: tfds.core.DatasetBuilder, split: Any, *,
                decode_images: bool = True,
                shuffle_files: bool = False,
                read_config: Optional[tfds.ReadConfig] = None):
  """A tf.data.Dataset of the split's {'image', 'label'}, from TFRecord or ArrayRecord.

  Args:
    builder: a prepared builder.
    split: split name or TFDS sub-split.
    decode_images: decode 'image' to uint8 (H, W, C) with `decode_image_bytes`; if False
      'image' holds the encoded bytes (for fused decode-and-crop).
    shuffle_files: let TFDS shuffle the order of the files (seeded by `read_config`).
    read_config: TFDS read options.
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  skip_decoding = {"image": tfds.decode.SkipDecoding()}
  formats = _available_formats(builder)
  if _TFRECORD in formats or _ARRAY_RECORD not in formats:
    examples = builder.as_dataset(split=split, shuffle_files=shuffle_files,
                                  read_config=read_config, decoders=skip_decoding)
  else:  # Small ArrayRecord sets: raw records in memory, parsed by TFDS's TF code.
    records = builder.as_data_source(
        split=split, deserialize_method=tfds.decode.DeserializeMethod.RAW_BYTES)
    serialized = records.__getitems__(range(len(records)))
    examples = tf.data.Dataset.from_tensor_slices(tf.constant(serialized, dtype=tf.string))
    examples = examples.map(
        functools.partial(builder.info.features.deserialize_example, decoders=skip_decoding),
        num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  examples = examples.map(lambda example: {"image": example["image"],
                                           "label": example["label"]})
  if not decode_images:
    return examples
  channels = builder.info.features["image"].shape[-1]
  return examples.map(
      lambda example: {"image": decode_image_bytes(example["image"], channels),
                       "label": example["label"]},
      num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


def _load_with_tensorflow(builder, split) -> dict[str, np.ndarray]:
  examples = tf_examples(builder, split)
  num_examples = int(examples.cardinality())  # TFDS datasets know their length.
  return next(iter(tfds.as_numpy(examples.batch(num_examples))))


def _load_with_data_source(builder, split) -> dict[str, np.ndarray]:
  if _ARRAY_RECORD not in _available_formats(builder):
    raise MissingDatasetError(
        f"data set '{builder.name}' in data_dir {_data_dir_text(builder)} has no "
        "ArrayRecord files, which are needed without TensorFlow: run `tfds build "
        f"{builder.name} --data_dir=<data_dir> --file_format=array_record` on a machine "
        "with TensorFlow")
  source = builder.as_data_source(split=split)
  examples = []
  for start in range(0, len(source), _DATA_SOURCE_CHUNK):
    stop = min(len(source), start + _DATA_SOURCE_CHUNK)
    examples.extend(source.__getitems__(range(start, stop)))
  return {key: np.stack([np.asarray(example[key]) for example in examples])
          for key in ("image", "label")}


def load_split_arrays(builder: tfds.core.DatasetBuilder,
                      split: Any) -> tuple[np.ndarray, np.ndarray]:
  """The whole split as (images uint8 (N, H, W, C), labels int32 (N,)), in stored order."""
  if tensorflow_available():
    arrays = _load_with_tensorflow(builder, split)
  else:
    arrays = _load_with_data_source(builder, split)
  images = np.asarray(arrays["image"], dtype=np.uint8)
  if images.ndim == 3:
    images = images[..., None]
  return images, np.asarray(arrays["label"], dtype=np.int32)
