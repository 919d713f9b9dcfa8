"""Per-example tf.data preprocessing, deterministic under stateless seeds.

Every random op takes a shape-[2] int64 seed (derived per example by the caller), so that the
output depends on the seed and the example only, not on threading or on prefetching.

- CIFAR train: zero-pad 4, random 32x32 crop, horizontal flip (torchvision RandomCrop(32,
  padding=4) + RandomHorizontalFlip), the same semantics as `device_augment`.
- ImageNet train: inception crop (area fraction in [0.08, 1], aspect ratio in [3/4, 4/3], up
  to 10 tries, else the whole image; TF's `sample_distorted_bounding_box`), bilinear
  antialiased resize to `image_size`, horizontal flip.
- ImageNet eval: resize the shorter side to round(image_size * 256 / 224), centre crop
  `image_size` (torchvision Resize(256) + CenterCrop(224) at image_size 224).
- Every image is then normalised to (x / 255 - mean) / std.
"""

from typing import Sequence

import tensorflow as tf

from jaxkd.data import tfds_source


def normalize(image: tf.Tensor, mean: Sequence[float], std: Sequence[float]) -> tf.Tensor:
  """Pixels x in [0, 255] (any dtype) to float32 (x / 255 - mean) / std."""
  scaled = tf.cast(image, tf.float32) / 255.0
  return (scaled - tf.constant(mean, tf.float32)) / tf.constant(std, tf.float32)


def cifar_crop_and_flip(image: tf.Tensor, seed: tf.Tensor, pad: int = 4) -> tf.Tensor:
  """Zero-pad by `pad`, random crop back to the input size, random horizontal flip."""
  crop_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(seed, num=2))
  padded = tf.pad(image, [[pad, pad], [pad, pad], [0, 0]])
  cropped = tf.image.stateless_random_crop(padded, tf.shape(image), seed=crop_seed)
  return tf.image.stateless_random_flip_left_right(cropped, seed=flip_seed)


def inception_crop_and_flip(jpeg: tf.Tensor, seed: tf.Tensor, image_size: int) -> tf.Tensor:
  """Random-resized crop of encoded JPEG bytes, resized to image_size, randomly flipped."""
  box_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(seed, num=2))
  begin, size, _ = tf.image.stateless_sample_distorted_bounding_box(
      tf.image.extract_jpeg_shape(jpeg),
      bounding_boxes=tf.constant([0.0, 0.0, 1.0, 1.0], shape=[1, 1, 4]),
      seed=box_seed,
      min_object_covered=0.0,
      aspect_ratio_range=(3 / 4, 4 / 3),
      area_range=(0.08, 1.0),
      max_attempts=10,
      use_image_if_no_bounding_boxes=True)
  window = tf.stack([begin[0], begin[1], size[0], size[1]])
  image = tf.io.decode_and_crop_jpeg(jpeg, window, channels=3, dct_method="INTEGER_ACCURATE")
  image = tf.image.resize(image, [image_size, image_size], method="bilinear", antialias=True)
  return tf.image.stateless_random_flip_left_right(image, seed=flip_seed)


def resize_and_centre_crop(encoded: tf.Tensor, image_size: int) -> tf.Tensor:
  """Shorter side to round(image_size * 256 / 224), then the central image_size square."""
  image = tfds_source.decode_image_bytes(encoded, channels=3)
  resize_to = round(image_size * 256 / 224)
  height = tf.cast(tf.shape(image)[0], tf.float32)
  width = tf.cast(tf.shape(image)[1], tf.float32)
  scale = resize_to / tf.minimum(height, width)
  new_size = tf.cast(tf.round(tf.stack([height * scale, width * scale])), tf.int32)
  image = tf.image.resize(image, new_size, method="bilinear", antialias=True)
  top = (new_size[0] - image_size) // 2
  left = (new_size[1] - image_size) // 2
  return image[top:top + image_size, left:left + image_size, :]
