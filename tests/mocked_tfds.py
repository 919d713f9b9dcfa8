"""Mocked TFDS data sets: builder metadata written to a temporary data_dir, then mock_data.

The builders' metadata (splits of a few examples, TFRecord format) makes them count as
prepared; `tfds.testing.mock_data` then generates their records.
"""

import pytest
import tensorflow_datasets as tfds

NUM_EXAMPLES = 48


def write_metadata(data_dir, name: str, splits: tuple[str, str]) -> None:
  builder = tfds.builder(name, data_dir=data_dir, try_gcs=False)
  template = tfds.core.ShardedFileTemplate(data_dir=builder.data_path, dataset_name=name,
                                           filetype_suffix="tfrecord")
  builder.info.set_splits(tfds.core.SplitDict([
      tfds.core.SplitInfo(name=split, shard_lengths=[NUM_EXAMPLES], num_bytes=0,
                          filename_template=template.replace(split=split))
      for split in splits]))
  builder.info.set_file_format("tfrecord")
  builder.data_path.mkdir(parents=True)
  builder.info.write_to_directory(builder.data_path)


@pytest.fixture(scope="module")
def mocked_dir(tmp_path_factory):
  data_dir = str(tmp_path_factory.mktemp("tfds"))
  write_metadata(data_dir, "cifar100", ("train", "test"))
  write_metadata(data_dir, "imagenet2012", ("train", "validation"))
  with tfds.testing.mock_data(num_examples=NUM_EXAMPLES, data_dir=data_dir):
    yield data_dir


