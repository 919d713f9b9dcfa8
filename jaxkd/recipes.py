"""The published training recipes, as config builders that config files compose.

CIFAR (RepDistiller / mdistiller / SimKD / ATSC, methods.md §10): SGD momentum 0.9,
batch 64, lr 0.05 (0.01 for MobileNetV2 and ShuffleNet students), weight decay 5e-4,
240 epochs, ×0.1 after epochs 150, 180 and 210.
ImageNet (mdistiller KD/DKD, ResNet34 ▶ ResNet18): batch 512, lr 0.2, weight decay
1e-4, 100 epochs, ×0.1 after epochs 30, 60 and 90.
"""

import ml_collections

from jaxkd import config_schema, methods

SMALL_LR_STUDENTS = ("MobileNetV2", "ShuffleV1", "ShuffleV2", "ShuffleV2_1_5")


def cifar_run(method: str, model: str, dataset: str = "cifar100") -> ml_collections.ConfigDict:
  """One CIFAR-recipe run of `method` training `model` (the student, or a CE teacher)."""
  config = config_schema.base_config()
  config.method = method
  config.dataset = dataset
  config.student_model = model
  config[method] = methods.default_config(method)
  if model in SMALL_LR_STUDENTS:
    config.optimizer.learning_rate = 0.01
  return config


def imagenet_run(method: str, model: str) -> ml_collections.ConfigDict:
  """One ImageNet-recipe run of `method` training `model`."""
  config = config_schema.base_config()
  config.method = method
  config.dataset = "imagenet2012"
  config.student_model = model
  config[method] = methods.default_config(method)
  config.batch_size = 512
  config.eval_batch_size = 512
  config.num_epochs = 100
  config.optimizer = config_schema.sgd_config(learning_rate=0.2, weight_decay=1e-4,
                                              decay_epochs=(30, 60, 90))
  config.log_every_steps = 100
  config.checkpoint_every_steps = 1000
  return config


def cifar_distillation(method: str, teacher: str, student: str,
                       dataset: str = "cifar100") -> ml_collections.ConfigDict:
  """Teacher trained with CE ▶ student distilled with `method`, both on the CIFAR recipe."""
  return config_schema.teacher_then_student(cifar_run("ce", teacher, dataset),
                                            cifar_run(method, student, dataset))
