"""`jaxkd.data.prepare`: TFDS's own cifar100/cifar10 builders fed a local official archive.

Fast tests write tiny archives in the official binary layouts (20 train, 10 test records) and
check that the prepared splits hold exactly those records. TFDS's cifar builders shuffle the
stored order (by a hash of the example index), so records are matched through the 'id'
feature, `train_NNNNN` / `test_NNNNN` for the NNNNN-th record of the split's files.

The real-data tests (marked slow: preparing CIFAR-100 takes about 30 s on 2 cores, once per
session, by the `cifar100_data_dir` fixture of tests/conftest.py) are skipped when
cifar-100-binary.tar.gz is not in $JAXKD_MANUAL_DIR (default <repository>/../shared/data).
"""

import os
import pathlib
import subprocess
import sys
import tarfile

import numpy as np
import pytest
import tensorflow_datasets as tfds

from jaxkd.data import cifar10_jpeg_builder
from jaxkd.data import datasets
from jaxkd.data import prepare
from jaxkd.data import tfds_source

REPOSITORY = pathlib.Path(__file__).resolve().parents[2]
NUM_TRAIN, NUM_TEST = 20, 10
PUBLISHED_CIFAR100_MEAN = (0.5071, 0.4865, 0.4409)
PUBLISHED_CIFAR100_STD = (0.2673, 0.2564, 0.2762)


def write_records(path: pathlib.Path, labels: np.ndarray, images: np.ndarray) -> None:
  """Official binary records: the label bytes, then R, G and B planes of 32x32 pixels."""
  planes = images.transpose(0, 3, 1, 2).reshape(len(images), -1)
  path.write_bytes(np.concatenate([labels.astype(np.uint8), planes], axis=1).tobytes())


def write_tiny_dataset(root: pathlib.Path, name: str, seed: int) -> dict:
  """The official layout of `name` under `root`; returns {split: (labels (N, k), images)}."""
  layout = prepare.LAYOUTS[name]
  folder = root / layout.folder
  folder.mkdir(parents=True)
  for file_name, count in layout.label_files.items():
    names = (f"{pathlib.Path(file_name).stem}_{i}" for i in range(count))
    (folder / file_name).write_text("".join(f"{label_name}\n" for label_name in names))
  rng = np.random.default_rng(seed)
  label_counts = list(layout.label_files.values())
  written = {}
  for split, num in (("train", NUM_TRAIN), ("test", NUM_TEST)):
    labels = np.stack([rng.integers(0, count, num) for count in label_counts], axis=1)
    images = rng.integers(0, 256, (num, 32, 32, 3), dtype=np.uint8)
    written[split] = (labels, images)
    files = [f for f in layout.record_files if ("test" in f) == (split == "test")]
    for part, file_name in zip(np.array_split(np.arange(num), len(files)), files):
      write_records(folder / file_name, labels[part], images[part])
  return written


def write_tar_gz(folder: pathlib.Path, archive: pathlib.Path) -> pathlib.Path:
  with tarfile.open(archive, "w:gz") as tar:
    for path in sorted(folder.iterdir()):
      tar.add(path, arcname=path.name)
  return archive


@pytest.fixture(scope="module", params=["cifar100", "cifar10"])
def tiny(request, tmp_path_factory):
  """(name, extracted folder, .tar.gz, records written) of a tiny official archive."""
  name = request.param
  layout = prepare.LAYOUTS[name]
  base = tmp_path_factory.mktemp(f"tiny_{name}")
  written = write_tiny_dataset(base / "extracted", name, seed=len(name))
  archive = write_tar_gz(base / "extracted", base / layout.archive_name)
  return name, base / "extracted", archive, written


def assert_holds_records(builder: tfds.core.DatasetBuilder, name: str, written: dict) -> None:
  """Each split holds exactly the written records (pixels and labels), matched by 'id'."""
  label_keys = {"cifar100": ("coarse_label", "label"), "cifar10": ("label",)}[name]
  for split, (labels, images) in written.items():
    examples = builder.as_data_source(split=split)
    assert len(examples) == len(images)
    indices = []
    for example in examples:
      index = int(example["id"].decode().removeprefix(f"{split}_"))
      indices.append(index)
      np.testing.assert_array_equal(example["image"], images[index])
      assert [int(example[key]) for key in label_keys] == list(labels[index])
    assert sorted(indices) == list(range(len(images)))


def prepared_files(data_dir: pathlib.Path) -> list[str]:
  return sorted(str(path.relative_to(data_dir)) for path in data_dir.rglob("*"))


@pytest.mark.parametrize("form", ["tar.gz", "folder", "inner folder"])
def test_prepares_exactly_the_records(tiny, form, tmp_path):
  name, folder, archive, written = tiny
  given = {"tar.gz": archive, "folder": folder,
           "inner folder": folder / prepare.LAYOUTS[name].folder}[form]
  builder = prepare.prepare(name, given, tmp_path)
  assert builder.is_prepared() and builder.name == name
  assert builder.version == tfds.builder_cls(name).VERSION
  assert builder.info.file_format == tfds.core.FileFormat.ARRAY_RECORD
  (url_info,) = builder.url_infos.values()
  assert builder.info.download_size == url_info.size  # What `tfds build` records.
  assert_holds_records(builder, name, written)
  layout = prepare.LAYOUTS[name]
  label_file = list(layout.label_files)[-1]
  assert builder.info.features["label"].names == (
      folder / layout.folder / label_file).read_text().split()
  version = str(builder.version)
  assert prepared_files(tmp_path) == sorted([
      name, f"{name}/{version}", f"{name}/{version}/dataset_info.json",
      f"{name}/{version}/features.json",
      *(f"{name}/{version}/{key}.labels.txt" for key in builder.info.features
        if key.endswith("label")),
      *(f"{name}/{version}/{name}-{split}.array_record-00000-of-00001"
        for split in ("train", "test"))])


def test_tfrecord_format_and_reuse(tiny, tmp_path):
  name, _, archive, written = tiny
  builder = prepare.prepare(name, archive, tmp_path, file_format="tfrecord")
  assert builder.info.file_format == tfds.core.FileFormat.TFRECORD
  images, _ = tfds_source.load_split_arrays(builder, "test")
  assert sorted(map(bytes, images)) == sorted(map(bytes, written["test"][1]))
  before = prepared_files(tmp_path)
  assert prepare.prepare(name, archive, tmp_path).is_prepared()  # Reused, not rewritten.
  assert prepared_files(tmp_path) == before


def test_command_line_writes_only_into_data_dir(tmp_path):
  """`python -m jaxkd.data.prepare`: one summary line; nothing in $HOME or the temp dir."""
  written = write_tiny_dataset(tmp_path / "extracted", "cifar10", seed=3)
  archive = write_tar_gz(tmp_path / "extracted", tmp_path / "cifar-10-binary.tar.gz")
  home, temp, data_dir = tmp_path / "home", tmp_path / "temp", tmp_path / "tfds"
  home.mkdir()
  temp.mkdir()
  environment = {key: value for key, value in os.environ.items() if key != "KERAS_HOME"}
  environment.update(HOME=str(home), TMPDIR=str(temp))
  result = subprocess.run(
      [sys.executable, "-m", "jaxkd.data.prepare", "cifar10", "--archive", str(archive),
       "--data_dir", str(data_dir)],
      cwd=REPOSITORY, env=environment, capture_output=True, text=True, check=False)
  assert result.returncode == 0, result.stderr[-3000:]
  assert result.stdout.strip().splitlines()[-1] == (
      f"prepared cifar10/3.0.2 in {data_dir} (array_record): train {NUM_TRAIN}, "
      f"test {NUM_TEST} examples")
  assert list(home.iterdir()) == [] and list(temp.iterdir()) == []
  assert [path.name for path in data_dir.iterdir()] == ["cifar10"]
  assert_holds_records(prepare.open_builder("cifar10", str(data_dir)), "cifar10", written)


def tiny_cifar100_folder(base: pathlib.Path, case: str) -> pathlib.Path:
  """The cifar-100-binary/ folder of a fresh tiny copy in base/case, to be broken by a test."""
  write_tiny_dataset(base / case, "cifar100", seed=0)
  return base / case / "cifar-100-binary"


def bad_inputs(base: pathlib.Path) -> dict[str, tuple[pathlib.Path, str]]:
  """case -> (archive argument for cifar100, expected part of the error)."""
  write_tiny_dataset(base / "cifar10", "cifar10", seed=0)
  truncated = tiny_cifar100_folder(base, "truncated")
  (truncated / "train.bin").write_bytes((truncated / "train.bin").read_bytes()[:-1])
  missing = tiny_cifar100_folder(base, "missing")
  (missing / "test.bin").unlink()
  labels = tiny_cifar100_folder(base, "labels")
  (labels / "fine_label_names.txt").write_text("one\ntwo\n")
  (base / "not_gzip.tar.gz").write_bytes(b"not an archive")
  return {
      "missing path": (base / "absent.tar.gz", "does not exist: give the path of "
                       "cifar-100-binary.tar.gz or of the folder it was extracted into"),
      "other folder": (base / "cifar10", "holds no cifar-100-binary/ folder"),
      "other archive": (write_tar_gz(base / "cifar10", base / "cifar-10-binary.tar.gz"),
                        f"{base}/cifar-10-binary.tar.gz holds no cifar-100-binary/ folder "
                        "(it holds ['cifar-10-batches-bin'])"),
      "not a tar.gz": (base / "not_gzip.tar.gz", "is not a readable .tar.gz"),
      "truncated records": (truncated, "not a positive multiple of the 3074-byte records"),
      "missing records": (missing, "test.bin is missing"),
      "label names": (labels, "has 2 names, not 100"),
  }


def test_bad_input_raises_one_line_saying_what_to_fix(tmp_path):
  for case, (archive, expected) in bad_inputs(tmp_path / "inputs").items():
    data_dir = tmp_path / "tfds" / case.replace(" ", "_")
    with pytest.raises(prepare.PrepareError) as error:
      prepare.prepare("cifar100", archive, data_dir)
    assert expected in str(error.value) and "\n" not in str(error.value), case
    assert not data_dir.exists() or not any(data_dir.iterdir()), case
  with pytest.raises(SystemExit) as exit_info:
    prepare.main(["cifar100", "--archive", str(tmp_path / "absent"), "--data_dir",
                  str(tmp_path / "tfds" / "main")])
  assert str(exit_info.value.code).startswith("jaxkd.data.prepare: ")
  assert "\n" not in str(exit_info.value.code)
  with pytest.raises(prepare.PrepareError, match="choose one of"):
    prepare.prepare("imagenet2012", tmp_path, tmp_path / "tfds" / "other")


def test_prepared_builder_prepares_from_manual_dir(tiny, tmp_path, monkeypatch):
  name, _, archive, written = tiny
  manual_dir = tmp_path / "manual"
  manual_dir.mkdir()
  (manual_dir / prepare.LAYOUTS[name].archive_name).symlink_to(archive)
  monkeypatch.setenv(cifar10_jpeg_builder.MANUAL_DIR_ENV, str(manual_dir))
  builder = tfds_source.prepared_builder(datasets.dataset_source(name), str(tmp_path / "tfds"))
  assert builder.is_prepared()
  assert builder.info.splits["train"].num_examples == NUM_TRAIN
  assert_holds_records(builder, name, written)


def test_missing_archive_names_both_ways(tmp_path, monkeypatch):
  monkeypatch.setenv(cifar10_jpeg_builder.MANUAL_DIR_ENV, str(tmp_path))
  with pytest.raises(tfds_source.MissingDatasetError) as error:
    tfds_source.prepared_builder(datasets.dataset_source("cifar100"), str(tmp_path / "tfds"))
  message = str(error.value)
  assert f"{tmp_path / 'cifar-100-binary.tar.gz'} does not exist" in message
  assert "python -m jaxkd.data.prepare cifar100 --archive" in message
  assert "tfds build cifar100" in message


def read_first_test_record(archive: pathlib.Path) -> tuple[int, np.ndarray]:
  """(fine label, image) of the first record of cifar-100-binary/test.bin in the archive."""
  with tarfile.open(archive, "r:gz") as tar:
    record = tar.extractfile("cifar-100-binary/test.bin").read(3074)
  pixels = np.frombuffer(record[2:], dtype=np.uint8).reshape(3, 32, 32).transpose(1, 2, 0)
  return record[1], pixels


@pytest.fixture(scope="module")
def real_train_arrays(cifar100_data_dir):
  builder = tfds_source.prepared_builder(datasets.dataset_source("cifar100"),
                                         cifar100_data_dir)
  return tfds_source.load_split_arrays(builder, "train")


@pytest.mark.slow
def test_real_cifar100_counts_and_statistics(real_train_arrays):
  images, labels = real_train_arrays
  assert images.shape == (50_000, 32, 32, 3) and images.dtype == np.uint8
  np.testing.assert_array_equal(np.bincount(labels, minlength=100), np.full(100, 500))
  pixels = images.reshape(-1, 3) / 255.0
  np.testing.assert_allclose(pixels.mean(0), PUBLISHED_CIFAR100_MEAN, atol=1e-3)
  np.testing.assert_allclose(pixels.std(0), PUBLISHED_CIFAR100_STD, atol=1e-3)


@pytest.mark.slow
def test_real_cifar100_test_split_through_jaxkd_loader(cifar100_data_dir):
  builder = tfds_source.prepared_builder(datasets.dataset_source("cifar100"),
                                         cifar100_data_dir)
  assert builder.info.splits["test"].num_examples == 10_000
  images, labels = tfds_source.load_split_arrays(builder, "test")
  assert images.shape == (10_000, 32, 32, 3) and images.dtype == np.uint8
  np.testing.assert_array_equal(np.bincount(labels, minlength=100), np.full(100, 100))
  archive = cifar10_jpeg_builder.default_manual_dir() / "cifar-100-binary.tar.gz"
  label, pixels = read_first_test_record(archive)
  # Stored order is TFDS's shuffle: find test.bin's first record by its pixels and its id.
  position, = np.flatnonzero((images == pixels).all(axis=(1, 2, 3)))
  assert labels[position] == label
  assert builder.as_data_source(split="test")[int(position)]["id"] == b"test_00000"


@pytest.mark.parametrize("entries, expected", [
    (("summary.json", "checkpoints"), "holds a training run (summary.json, checkpoints/): give "
     "another --data_dir, or --overwrite to write over it"),
    (("model.json", "variables"), "holds an exported model (model.json, variables/): give "
     "another --data_dir, or --overwrite to write over it"),
], ids=["run", "export"])
def test_command_refuses_a_data_dir_holding_a_run_or_a_model(tmp_path, entries, expected):
  data_dir = tmp_path / "run"
  data_dir.mkdir()
  (data_dir / entries[0]).write_text("{}")
  (data_dir / entries[1]).mkdir()
  with pytest.raises(SystemExit) as exit_info:
    prepare.main(["cifar100", "--archive", str(tiny_cifar100_folder(tmp_path, "archive")),
                  "--data_dir",
                  str(data_dir)])
  assert str(exit_info.value.code) == f"jaxkd.data.prepare: --data_dir={data_dir} {expected}"
  assert sorted(os.listdir(data_dir)) == sorted(entries)


def test_command_refuses_a_data_dir_under_a_file(tmp_path):
  (tmp_path / "notes.txt").write_text("")
  data_dir = tmp_path / "notes.txt" / "tfds"
  with pytest.raises(SystemExit) as exit_info:
    prepare.main(["cifar100", "--archive", str(tiny_cifar100_folder(tmp_path, "archive")),
                  "--data_dir",
                  str(data_dir)])
  assert str(exit_info.value.code) == (
      f"jaxkd.data.prepare: --data_dir={data_dir} cannot be written ({tmp_path / 'notes.txt'} "
      "is a file, not a directory): give a path you can write to")
