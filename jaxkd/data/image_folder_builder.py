"""TFDS builder for a folder of one's own images (`imagefolder:<root>`, see `imagefolder`).

One builder, one config per folder: the config is named by the folder's base name and
fingerprint (`FolderLayout.config_name`) and carries the layout, so the data lives in
`<data_dir>/jaxkd_image_folder/<config>/1.0.0/` and a changed folder is prepared anew. Examples
are stored in layout order (split, class, file name). A PNG or JPEG already in the data set's
mode (L for grey, RGB) is stored as its bytes, unchanged; any other image (another format or
mode: RGBA, palette, grey among RGB, ...) is converted to that mode and stored as PNG, so both
TensorFlow and Pillow decode every example to the pixels `imagefolder.decoded` gives.
"""

import dataclasses
import io
import os
from typing import Any

import tensorflow_datasets as tfds

from jaxkd.data import datasets, imagefolder

_STORED_AS_IS = ("PNG", "JPEG")


@dataclasses.dataclass(eq=False)
class FolderConfig(tfds.core.BuilderConfig):
  """A builder config for one folder: its layout and image shape."""
  layout: Any = dataclasses.field(default=None, repr=False)
  image_shape: tuple[int, int, int] = (0, 0, 0)


class JaxkdImageFolder(tfds.core.GeneratorBasedBuilder):
  """The images of one folder: train and test splits, labels by sorted class folder name."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "PNG/JPEG bytes stored as found, other images as PNG."}
  _CONFIGS: dict[str, FolderConfig] = {}  # The configs made by `builder_config`, by name.

  @classmethod
  def get_builder_config(cls, name: str, version=None):
    """The config `builder_config` made under `name` (TFDS would warn about a config that is
    not among BUILDER_CONFIGS, which cannot list folders known only at run time)."""
    del version
    return cls._CONFIGS.get(name)

  def _info(self) -> tfds.core.DatasetInfo:
    config = self.builder_config
    return self.dataset_info_from_configs(
        features=tfds.features.FeaturesDict({
            "image": tfds.features.Image(shape=config.image_shape),
            "label": tfds.features.ClassLabel(names=config.layout.class_names),
        }),
        supervised_keys=("image", "label"),
        disable_shuffling=True,  # Store examples in generation order.
        description=f"The images of {config.layout.root}.",
    )

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    del dl_manager  # The images are read from the folder itself.
    return {split: self._generate_examples(split) for split in imagefolder.SPLITS}

  def _generate_examples(self, split: str):
    layout, channels = self.builder_config.layout, self.builder_config.image_shape[-1]
    for index, (relative, label) in enumerate(layout.files(split)):
      yield index, {"image": stored_bytes(os.path.join(layout.root, relative), channels),
                    "label": label}


def stored_bytes(path: str, channels: int) -> bytes:
  """The bytes stored for the image at `path`: its own when it is a PNG or JPEG in the data
  set's mode, else a PNG of it converted to that mode."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  mode = imagefolder.target_mode(channels)
  with Image.open(path) as image:
    if image.format in _STORED_AS_IS and image.mode == mode:
      with open(path, "rb") as f:
        return f.read()
    buffer = io.BytesIO()
    image.convert(mode).save(buffer, format="PNG")
  return buffer.getvalue()


def builder_config(source: datasets.DatasetSource) -> FolderConfig:
  """The builder config of `source` (an `imagefolder.folder_source`), known to the builder."""
  layout = source.builder_input
  config = FolderConfig(name=layout.config_name, description=f"The images of {layout.root}.",
                        layout=layout, image_shape=source.info.image_shape)
  return JaxkdImageFolder._CONFIGS.setdefault(config.name, config)  # pylint: disable=protected-access
