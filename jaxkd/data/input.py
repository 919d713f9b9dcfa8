"""`create_input(config, mesh)`: the training and evaluation batches of a run.

Two interchangeable paths produce the same contract (see `Input`):
- 'device' (`device_input`): the whole split lives on every device as uint8; shuffling,
  crop/flip and normalisation run in one jit-compiled function. For data sets that fit in
  memory; needs no TensorFlow when the data is stored as ArrayRecord.
- 'tfdata' (`tfdata_input`): per-host tf.data pipelines (required for ImageNet).
`input_path='auto'` picks 'device' for data sets that fit in memory, 'tfdata' otherwise.

Evaluation splits: 'test' is the data set's published evaluation split (CIFAR's test split,
ImageNet's TFDS 'validation' split, as papers report); 'validation' exists when
`validation_examples` > 0 and is held out of the training split (`validation_split`), which
then trains on the rest, or on `train_examples_per_class` images of every class of the rest.

Config fields read: dataset, data_dir ('' = TFDS default), batch_size and eval_batch_size
(global), seed, input_path ('auto' | 'device' | 'tfdata', default 'auto'), image_size (ImageNet
resolution, default 224), validation_examples and validation_seed (default 0: no validation),
train_examples_per_class and train_subset_seed (default 0: every training example).
"""

import dataclasses

import jax
import ml_collections

from jaxkd.data import datasets
from jaxkd.data import tfds_source
from jaxkd.data.input_base import (TEST_SPLIT, VALIDATION_SPLIT, Input, TrainingSelection,
                                    split_arrays)
from jaxkd.ranges import check_choice

INPUT_PATHS = ("auto", "device", "tfdata")


def _choose_path(source: datasets.DatasetSource, requested: str) -> str:
  check_choice("config.input_path", requested, INPUT_PATHS)
  if requested == "auto":
    return "device" if source.fits_in_memory else "tfdata"
  if requested == "device" and not source.fits_in_memory:
    raise ValueError(f"data set '{source.info.name}' does not fit in device memory; "
                     "use input_path='tfdata'")
  return requested


def check_batch_size(name: str, batch_size: int, num_devices: int) -> None:
  """Raises ValueError unless `batch_size` splits evenly over the devices and processes."""
  divisor = max(num_devices, jax.process_count())
  if batch_size <= 0 or batch_size % divisor:
    raise ValueError(f"{name}={batch_size} must be a positive multiple of the {num_devices}"
                     f" devices and {jax.process_count()} processes")


def _model_info(source: datasets.DatasetSource, config: ml_collections.ConfigDict):
  info = source.info
  if info.augmentation == "imagenet":
    size = int(config.get("image_size", 224))
    info = dataclasses.replace(info, image_shape=(size, size, info.image_shape[-1]))
  return info


def create_input(config: ml_collections.ConfigDict, mesh: jax.sharding.Mesh) -> Input:
  """Opens (or builds) the data set named by `config.dataset` and returns its `Input`.

  Raises:
    ValueError: unknown data set or input path, or batch sizes the mesh cannot split.
    tfds_source.MissingDatasetError: the data is not prepared and cannot be built here.
  """
  source = datasets.dataset_source(config.dataset)
  path = _choose_path(source, config.get("input_path", "auto"))
  for field in ("batch_size", "eval_batch_size"):
    check_batch_size(f"config.{field}", config[field], mesh.devices.size)
  info = _model_info(source, config)
  builder = tfds_source.prepared_builder(source, config.data_dir)
  selection = TrainingSelection.from_config(config)
  if path == "device":
    from jaxkd.data import device_input  # pylint: disable=g-import-not-at-top
    train = tfds_source.load_split_arrays(builder, source.train_split)
    evaluation = {TEST_SPLIT: tfds_source.load_split_arrays(builder, source.eval_split)}
    if selection.selects:
      train, validation = split_arrays(train, selection)
      if validation is not None:
        evaluation[VALIDATION_SPLIT] = validation
    return device_input.DeviceInput(
        info, train=train, evaluation=evaluation,
        batch_size=config.batch_size, eval_batch_size=config.eval_batch_size,
        seed=config.seed, mesh=mesh)
  from jaxkd.data import tfdata_input  # pylint: disable=g-import-not-at-top
  return tfdata_input.TfDataInput(
      info, source, builder, batch_size=config.batch_size,
      eval_batch_size=config.eval_batch_size, seed=config.seed, mesh=mesh,
      selection=selection)
