"""The data sets jaxkd knows: what the model sees (`DatasetInfo`) and where TFDS finds it.

`dataset_info(name)` and `dataset_names()` are the public face; `dataset_source(name)` adds
what the input pipelines need (TFDS builder, split names, whether the split fits in memory).
Unknown names raise a ValueError that lists the valid ones.

Besides the registered names, `imagefolder:<root>` is a folder of one's own images
(`imagefolder`): its classes, image shape, sizes and statistics are read from the folder.

Per-channel statistics are of the pixels scaled to [0, 1], over each training split:
CIFAR-100/CIFAR-10 the usual published values, cifar10_jpeg those of its decoded JPEGs
(shared/data/README.md), digits those of its 1,437 training images (checked by a test),
ImageNet torchvision's, an image folder those of its own training images.
"""

import dataclasses
from typing import Any, Literal, Optional

from jaxkd.ranges import did_you_mean
from jaxkd.registry import Registry

Augmentation = Literal["cifar", "imagenet", "none"]


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
  """What a model and a trainer need to know about a data set.

  Attributes:
    name: registry name, e.g. 'cifar100'.
    num_classes: number of labels; labels are 0..num_classes-1.
    image_shape: (H, W, C) of the images the model receives.
    num_train: examples in the training split.
    num_eval: examples in the evaluation split.
    mean: per-channel mean subtracted after scaling pixels to [0, 1].
    std: per-channel standard deviation divided out after subtracting the mean.
    augmentation: 'cifar' (pad-4 random crop + flip), 'imagenet' (inception crop + flip),
      or 'none'.
  """
  name: str
  num_classes: int
  image_shape: tuple[int, int, int]
  num_train: int
  num_eval: int
  mean: tuple[float, ...]
  std: tuple[float, ...]
  augmentation: Augmentation


@dataclasses.dataclass(frozen=True)
class DatasetSource:
  """Where the examples of a data set come from.

  Attributes:
    info: the data set's `DatasetInfo`.
    tfds_name: name of the TFDS builder.
    train_split: TFDS split used for training.
    eval_split: TFDS split used for evaluation.
    fits_in_memory: the splits are small enough to hold as uint8 arrays on every device;
      'auto' then picks the device-resident input path.
    builder_module: for builders of our own, the jaxkd module defining them (imported
      lazily, built on first use); None for builders that ship with TFDS.
    how_to_get: the instruction printed when the data is missing.
    builder_input: for a builder of ours with one config per data set (image folders), what
      its module's `builder_config(source)` makes the config from; None otherwise.
  """
  info: DatasetInfo
  tfds_name: str
  train_split: str
  eval_split: str
  fits_in_memory: bool
  builder_module: Optional[str]
  how_to_get: str
  builder_input: Any = None


_SOURCES: Registry[DatasetSource] = Registry("dataset")

_CIFAR100_MEAN = (0.5071, 0.4867, 0.4408)
_CIFAR100_STD = (0.2675, 0.2565, 0.2761)
_CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
_CIFAR10_STD = (0.2470, 0.2435, 0.2616)
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


def _tfds_build_instruction(tfds_name: str) -> str:
  return (f"run `tfds build {tfds_name} --data_dir=<data_dir>` on a machine with network "
          "access (add `--file_format=array_record` for machines without TensorFlow)")


def _offline_cifar_instruction(tfds_name: str, archive_name: str) -> str:
  return (f"put the official {archive_name} in $JAXKD_MANUAL_DIR (default "
          "<repository>/../shared/data) and a run prepares it itself, or run `python -m "
          f"jaxkd.data.prepare {tfds_name} --archive <path of {archive_name}> "
          "--data_dir <data_dir>` (air-gapped machines), or "
          + _tfds_build_instruction(tfds_name))


def _register(source: DatasetSource) -> None:
  _SOURCES.register(source.info.name)(source)


def _offline_cifar(name: str, num_classes: int, mean: tuple[float, ...], std: tuple[float, ...],
                   archive_name: str) -> DatasetSource:
  """TFDS's own cifar10/cifar100 builder, fed offline from the official binary archive."""
  return DatasetSource(
      info=DatasetInfo(name, num_classes, (32, 32, 3), 50_000, 10_000, mean, std, "cifar"),
      tfds_name=name, train_split="train", eval_split="test", fits_in_memory=True,
      builder_module=None, how_to_get=_offline_cifar_instruction(name, archive_name))


_register(_offline_cifar("cifar100", 100, _CIFAR100_MEAN, _CIFAR100_STD, "cifar-100-binary.tar.gz"))
_register(_offline_cifar("cifar10", 10, _CIFAR10_MEAN, _CIFAR10_STD, "cifar-10-binary.tar.gz"))
_register(DatasetSource(
    info=DatasetInfo("fashion_mnist", 10, (28, 28, 1), 60_000, 10_000, (0.2860,),
                     (0.3530,), "none"),
    tfds_name="fashion_mnist", train_split="train", eval_split="test", fits_in_memory=True,
    builder_module=None, how_to_get=_tfds_build_instruction("fashion_mnist")))
_register(DatasetSource(
    info=DatasetInfo("imagenet2012", 1000, (224, 224, 3), 1_281_167, 50_000,
                     _IMAGENET_MEAN, _IMAGENET_STD, "imagenet"),
    tfds_name="imagenet2012", train_split="train", eval_split="validation",
    fits_in_memory=False, builder_module=None,
    how_to_get=("download ILSVRC2012_img_train.tar and ILSVRC2012_img_val.tar into "
                "<data_dir>/downloads/manual, then run `tfds build imagenet2012 "
                "--data_dir=<data_dir>`")))
_register(DatasetSource(
    info=DatasetInfo("digits", 10, (8, 8, 1), 1_437, 360, (0.3055,), (0.3759,), "none"),
    tfds_name="sklearn_digits", train_split="train", eval_split="test", fits_in_memory=True,
    builder_module="jaxkd.data.digits_builder",
    how_to_get="install scikit-learn, which ships the digits"))
_register(DatasetSource(
    info=DatasetInfo("cifar10_jpeg", 10, (32, 32, 3), 50_000, 10_000,
                     (0.4913, 0.4821, 0.4465), (0.2452, 0.2428, 0.2606), "cifar"),
    tfds_name="cifar10_jpeg", train_split="train", eval_split="test", fits_in_memory=True,
    builder_module="jaxkd.data.cifar10_jpeg_builder",
    how_to_get=("put cifar10_jpeg.tar.gz in $JAXKD_MANUAL_DIR (default "
                "<repository>/../shared/data) so that it can be built")))


def dataset_source(name: str, data_dir: Optional[str] = None) -> DatasetSource:
  """The `DatasetSource` of `name`; ValueError listing valid names if unknown.

  For `imagefolder:<root>`, the folder is checked and its statistics computed once per
  process; given a `data_dir` ('' = TFDS's default), they are cached there for later runs.
  """
  from jaxkd.data import imagefolder  # pylint: disable=g-import-not-at-top
  if imagefolder.is_image_folder(name):
    return imagefolder.folder_source(name, data_dir)
  if name not in _SOURCES:
    raise ValueError(f"unknown dataset '{name}'; valid datasets: {', '.join(dataset_names())}, "
                     f"or {imagefolder.PREFIX}/path/to/your/images"
                     f"{did_you_mean(name, dataset_names())}")
  return _SOURCES.get(name)


def dataset_info(name: str, data_dir: Optional[str] = None) -> DatasetInfo:
  """The `DatasetInfo` of `name` (ImageNet at its default 224x224 resolution)."""
  return dataset_source(name, data_dir).info


def dataset_names() -> list[str]:
  """Registered names accepted by `dataset_info` and by `config.dataset`, sorted (image
  folders, `imagefolder:<root>`, are accepted besides)."""
  return _SOURCES.names()
