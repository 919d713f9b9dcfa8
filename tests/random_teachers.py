"""Small randomly initialised teachers and batches, for tests that drive the train step."""

import jax
import jax.numpy as jnp
import numpy as np

from jaxkd import checkpoint, data, models, recipes
from jaxkd.methods import atsc

INFO = data.dataset_info("digits")  # 10 classes of 8×8×1 images.


def export_random_teacher(workdir, model_name="cnn_large", seed=1, num_classes=10):
  """Exports a randomly initialised `model_name` as a jaxkd teacher; returns its path."""
  module = models.create_model(model_name, num_classes)
  variables = module.init(jax.random.key(seed), jnp.zeros((1, *INFO.image_shape)), train=False)
  checkpoint.export_model(str(workdir), dict(variables),
                          {"model": model_name, "num_classes": num_classes})
  return str(workdir)


def random_batch(seed, batch_size=16):
  rng = np.random.default_rng(seed)
  return {"image": rng.normal(size=(batch_size, *INFO.image_shape)).astype(np.float32),
          "label": rng.integers(0, INFO.num_classes, size=batch_size).astype(np.int32)}


def method_config(method, teacher_dir, student_model="cnn_small"):
  """The CIFAR recipe of `method` on digits, distilling from the cnn_large in `teacher_dir`
  (ATSC with its teacher optimizer linked to the student's, as its config files do)."""
  config = recipes.cifar_run(method, student_model, "digits")
  if method == "atsc":
    config = atsc.share_student_optimizer(config)
  if method != "ce":
    config.teacher_model, config.teacher_checkpoint = "cnn_large", teacher_dir
  return config
