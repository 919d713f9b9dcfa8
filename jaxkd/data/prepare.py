"""Prepares TFDS's own `cifar100` or `cifar10` offline, from a local copy of the official archive.

    python -m jaxkd.data.prepare cifar100 --archive PATH --data_dir DIR \
        [--file_format array_record|tfrecord]

PATH is `cifar-100-binary.tar.gz` (`cifar-10-binary.tar.gz` for cifar10) or the folder it was
extracted into. TFDS's standard builder does all the decoding; only its download step is
replaced: the builder's download manager hands it the local folder for the builder's one URL
(a .tar.gz is first extracted into a temporary folder inside DIR, removed afterwards), and that
file's checksum is not verified, so a copy whose example order differs from the published one
is accepted. DIR then holds what `tfds build NAME --data_dir=DIR` writes (same builder,
version, features and files; the recorded download size is the registered one of the official
archive), minus the `downloads/` cache. The default format, ArrayRecord, is read by jaxkd with
or without TensorFlow.

`prepare()` is the library entry point (used by `tfds_source.prepared_builder` to prepare
automatically from `$JAXKD_MANUAL_DIR`); bad input raises `PrepareError`, whose one-line
message says what to fix.
"""

import argparse
import contextlib
import dataclasses
import os
import pathlib
import sys
import tarfile
import tempfile
from typing import Iterator, Optional, Sequence

from absl import logging
from etils import epath
import numpy as np
import tensorflow_datasets as tfds

from jaxkd import output_paths

FILE_FORMATS = ("array_record", "tfrecord")


class PrepareError(ValueError):
  """The archive or data_dir given cannot be used; the message says what to fix."""


@dataclasses.dataclass(frozen=True)
class ArchiveLayout:
  """The official binary archive of a CIFAR data set, as TFDS's builder reads it.

  Attributes:
    archive_name: file name of the published archive.
    folder: the folder the archive extracts to.
    record_files: files of fixed-size records (label bytes, then 3,072 pixel bytes).
    label_files: label-name file -> number of names (one per line), in record label order.
  """
  archive_name: str
  folder: str
  record_files: tuple[str, ...]
  label_files: dict[str, int]

  @property
  def record_bytes(self) -> int:
    return len(self.label_files) + 32 * 32 * 3


LAYOUTS = {
    "cifar100": ArchiveLayout(
        archive_name="cifar-100-binary.tar.gz", folder="cifar-100-binary",
        record_files=("train.bin", "test.bin"),
        label_files={"coarse_label_names.txt": 20, "fine_label_names.txt": 100}),
    "cifar10": ArchiveLayout(
        archive_name="cifar-10-binary.tar.gz", folder="cifar-10-batches-bin",
        record_files=tuple(f"data_batch_{i}.bin" for i in range(1, 6)) + ("test_batch.bin",),
        label_files={"batches.meta.txt": 10}),
}


def _label_names(path: pathlib.Path) -> list[str]:
  """The names of a label file, split as TFDS's cifar builder splits them."""
  return [name for name in path.read_text().split("\n") if name]


def _check_layout(root: pathlib.Path, layout: ArchiveLayout) -> None:
  """Raises PrepareError unless `root/layout.folder` holds the official binary layout."""
  folder = root / layout.folder
  for name, count in layout.label_files.items():
    path = folder / name
    if not path.is_file():
      raise PrepareError(f"{path} is missing: the official {layout.archive_name} holds it")
    if len(_label_names(path)) != count:
      raise PrepareError(f"{path} has {len(_label_names(path))} names, not {count}: it is not "
                         f"the label file of {layout.archive_name}")
  label_counts = list(layout.label_files.values())
  for name in layout.record_files:
    path = folder / name
    if not path.is_file():
      raise PrepareError(f"{path} is missing: the official {layout.archive_name} holds it")
    data = np.frombuffer(path.read_bytes(), dtype=np.uint8)
    if data.size == 0 or data.size % layout.record_bytes:
      raise PrepareError(f"{path} has {data.size} bytes, not a positive multiple of the "
                         f"{layout.record_bytes}-byte records of {layout.archive_name}")
    labels = data.reshape(-1, layout.record_bytes)[:, :len(label_counts)]
    if (labels.max(axis=0) >= label_counts).any():
      raise PrepareError(f"{path} has labels beyond {label_counts}: it is not a record file "
                         f"of {layout.archive_name}")


def _data_root(folder: pathlib.Path, layout: ArchiveLayout, given: pathlib.Path) -> pathlib.Path:
  """The folder holding `layout.folder/`: `folder` itself or, if it is that folder, its parent.

  `given` is what the user named (the archive `folder` was extracted from, or `folder`).
  """
  if (folder / layout.folder).is_dir():
    return folder
  if folder.name == layout.folder:
    return folder.parent
  found = sorted(path.name for path in folder.iterdir())[:5]
  raise PrepareError(f"{given} holds no {layout.folder}/ folder (it holds {found}): give "
                     f"{layout.archive_name} or the folder it was extracted into")


def _extract(archive: pathlib.Path, into: pathlib.Path) -> None:
  logging.info("Extracting %s into %s.", archive, into)
  try:
    with tarfile.open(archive, "r:gz") as tar:
      tar.extractall(into, filter="data")
  except (tarfile.TarError, OSError, EOFError) as error:
    raise PrepareError(f"{archive} is not a readable .tar.gz ({type(error).__name__}: "
                       f"{error}): give the official archive or its extracted folder") from error


def _local_root(archive: pathlib.Path, layout: ArchiveLayout,
                work_dir: pathlib.Path) -> pathlib.Path:
  """The checked folder holding `layout.folder/`, extracting `archive` into `work_dir` if needed."""
  if archive.is_dir():
    root = _data_root(archive, layout, archive)
  else:
    _extract(archive, work_dir / "extracted")
    root = _data_root(work_dir / "extracted", layout, archive)
  _check_layout(root, layout)
  return root


# Where the first import of TensorFlow writes into $HOME unless these are set: Keras's
# keras.json and, when matplotlib is installed (Keras imports it), matplotlib's font cache.
_HOME_DIR_VARIABLES = ("KERAS_HOME", "MPLCONFIGDIR")


@contextlib.contextmanager
def _side_files_in(work_dir: pathlib.Path) -> Iterator[None]:
  """Keeps what TFDS and TensorFlow write on the side inside `work_dir` (removed afterwards).

  Opening a builder that is not prepared makes an empty folder in the temporary directory
  (TFDS's `initialize_from_bucket`), and the first import of TensorFlow (by the builder, to
  read the records) writes into $HOME (`_HOME_DIR_VARIABLES`). Meanwhile the temporary
  directory and, if TensorFlow is not imported yet, those variables not already set point into
  `work_dir`; Keras and matplotlib, if first imported here, keep that (then removed) folder.
  """
  saved_tempdir = tempfile.tempdir
  tempfile.tempdir = str(work_dir)
  redirected = [] if "tensorflow" in sys.modules else [
      name for name in _HOME_DIR_VARIABLES if name not in os.environ]
  for name in redirected:
    os.environ[name] = str(work_dir / name.lower())
  try:
    yield
  finally:
    tempfile.tempdir = saved_tempdir
    for name in redirected:
      del os.environ[name]


class _LocalDownloadManager(tfds.download.DownloadManager):
  """A download manager that answers the builder's one URL with a local folder.

  The checksum of that folder's archive is not verified; any other URL is an error (nothing
  is downloaded). `downloaded_size` is the registered size of the official archive, which
  is what `tfds build` records in the dataset info.
  """

  def __init__(self, *, url: str, root: pathlib.Path, registered_size: int,
               work_dir: pathlib.Path):
    super().__init__(download_dir=work_dir / "downloads")
    self._url = url
    self._root = root
    self._registered_size = registered_size

  def download_and_extract(self, url_or_urls):
    if url_or_urls != self._url:
      raise PrepareError(f"the builder asked for {url_or_urls!r}, but only {self._url} is "
                         "available offline")
    logging.info("Using %s for %s (checksum not verified).", self._root, self._url)
    return epath.Path(self._root)

  @property
  def downloaded_size(self) -> int:
    return self._registered_size


def open_builder(name: str, data_dir: str) -> tfds.core.DatasetBuilder:
  """TFDS's standard builder `name` over `data_dir` (in the format it was prepared in)."""
  return tfds.builder(name, data_dir=data_dir, try_gcs=False)


def _check_arguments(name: str, archive: pathlib.Path, data_dir: pathlib.Path,
                     file_format: str) -> ArchiveLayout:
  if name not in LAYOUTS:
    raise PrepareError(f"cannot prepare {name!r} offline: choose one of {sorted(LAYOUTS)}")
  if not archive.exists():
    raise PrepareError(f"{archive} does not exist: give the path of "
                       f"{LAYOUTS[name].archive_name} or of the folder it was extracted into")
  if file_format not in FILE_FORMATS:
    raise PrepareError(f"file format {file_format!r} is not one of {FILE_FORMATS}")
  if data_dir.exists() and not data_dir.is_dir():
    raise PrepareError(f"data_dir {data_dir} is a file: give a folder (created if missing)")
  return LAYOUTS[name]


def prepare(name: str, archive: str | pathlib.Path, data_dir: str | pathlib.Path,
            file_format: str = "array_record") -> tfds.core.DatasetBuilder:
  """Prepares TFDS's `name` in `data_dir` from the local official archive or its folder.

  Args:
    name: 'cifar100' or 'cifar10'.
    archive: the official .tar.gz (see `LAYOUTS`) or the folder it was extracted into.
    data_dir: TFDS data_dir; created if missing. A copy already prepared there is reused,
      whatever its format.
    file_format: 'array_record' (read with or without TensorFlow) or 'tfrecord'.

  Returns:
    The prepared builder.

  Raises:
    PrepareError: unusable archive, folder or data_dir; the message says what to fix.
  """
  data_dir, archive = pathlib.Path(data_dir).absolute(), pathlib.Path(archive).absolute()
  layout = _check_arguments(name, archive, data_dir, file_format)
  data_dir.mkdir(parents=True, exist_ok=True)
  with tempfile.TemporaryDirectory(prefix=f"jaxkd_prepare_{name}_", dir=data_dir) as work:
    work_dir = pathlib.Path(work)
    with _side_files_in(work_dir):
      builder = open_builder(name, str(data_dir))
      if builder.is_prepared():
        logging.info("%s is already prepared in %s (%s): reused.", builder.info.full_name,
                     data_dir, builder.info.file_format.value)
        return builder
      logging.info("Preparing %s (%s) in %s from %s.", builder.info.full_name, file_format,
                   data_dir, archive)
      root = _local_root(archive, layout, work_dir)
      (url, url_info), = builder.url_infos.items()
      manager = _LocalDownloadManager(url=url, root=root, registered_size=url_info.size,
                                      work_dir=work_dir)
      # download_and_prepare makes its download manager through this method and no other.
      builder._make_download_manager = lambda **_: manager  # pylint: disable=protected-access
      builder.download_and_prepare(
          download_config=tfds.download.DownloadConfig(try_download_gcs=False),
          file_format=file_format)
  logging.info("Removed the temporary folder %s.", work_dir)
  return open_builder(name, str(data_dir))


def summary_line(builder: tfds.core.DatasetBuilder) -> str:
  """'prepared NAME/VERSION in DIR (FORMAT): train N, test M examples'."""
  counts = ", ".join(f"{split} {builder.info.splits[split].num_examples}"
                     for split in ("train", "test"))
  return (f"prepared {builder.info.full_name} in {builder.data_dir_root} "
          f"({builder.info.file_format.value}): {counts} examples")


def parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
  parser = argparse.ArgumentParser(prog="python -m jaxkd.data.prepare",
                                   description=__doc__.split("\n")[0])
  parser.add_argument("name", choices=sorted(LAYOUTS), help="TFDS data set to prepare")
  parser.add_argument("--archive", required=True,
                      help="the official binary .tar.gz or the folder it was extracted into")
  parser.add_argument("--data_dir", required=True, help="TFDS data_dir to prepare into")
  parser.add_argument("--file_format", choices=FILE_FORMATS, default="array_record",
                      help="record format (default: %(default)s, read without TensorFlow too)")
  parser.add_argument("--overwrite", action="store_true",
                      help="prepare into --data_dir even when it holds a run or a model")
  return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> None:
  """The command line: prepares, then prints `summary_line`; bad input exits with one line.

  A --data_dir holding a training run or a model (`output_paths`) is refused unless
  --overwrite is given.
  """
  args = parse_args(argv)
  logging.set_verbosity(logging.INFO)
  try:
    output_paths.check_output(args.data_dir, "--data_dir", args.overwrite,
                              output_paths.Kind.DIRECTORY)
    builder = prepare(args.name, args.archive, args.data_dir, args.file_format)
  except (PrepareError, output_paths.OutputError) as error:
    sys.exit(f"jaxkd.data.prepare: {error}")
  print(summary_line(builder))


if __name__ == "__main__":
  main()
