"""The published training recipes, as config builders that config files compose.

CIFAR (RepDistiller / mdistiller / SimKD / ATSC, docs/methods.md §10): SGD momentum 0.9,
batch 64, lr 0.05 (0.01 for MobileNetV2 and ShuffleNet students), weight decay 5e-4,
240 epochs, ×0.1 after epochs 150, 180 and 210.
ImageNet (mdistiller KD/DKD, ResNet34 ▶ ResNet18): batch 512, lr 0.2, weight decay
1e-4, 100 epochs, ×0.1 after epochs 30, 60 and 90.

The CIFAR learning rate follows the model the run finally trains: `cifar_run` leaves
`optimizer.learning_rate` computed from `student_model` whenever it is read, so
`--config.student_model=MobileNetV2` (`--config.stages.student.student_model=...` in a
pipeline) trains at 0.01 on a config file that names resnet8x4, and ATSC's teacher rate,
linked to it, follows too. Setting the rate (`--config.optimizer.learning_rate=X`, before or
after the model) replaces the rule; `config.to_dict()` and `summary.json` hold the value used.
"""

import ml_collections
from ml_collections.config_dict import config_dict

from jaxkd import config_schema, methods

# The reference `train_student.py` / `train_teacher.py` rule (SimKD / ATSC model names).
SMALL_LR_STUDENTS = ("MobileNetV2", "MobileNetV2_1_0", "ShuffleV1", "ShuffleV2", "ShuffleV2_1_5")
CIFAR_LEARNING_RATE = 0.05
SMALL_STUDENT_LEARNING_RATE = 0.01


def cifar_learning_rate(model: str) -> float:
  """The CIFAR recipe's learning rate for `model`: 0.01 for SMALL_LR_STUDENTS, else 0.05."""
  return SMALL_STUDENT_LEARNING_RATE if model in SMALL_LR_STUDENTS else CIFAR_LEARNING_RATE


def _learning_rate_of_model(_: float, model: str) -> float:
  """The lazy operation behind `follow_student_model` (ml_collections passes the field first)."""
  return cifar_learning_rate(model)


def follow_student_model(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """Makes `config.optimizer.learning_rate` read `cifar_learning_rate(config.student_model)`.

  The field becomes an ml_collections lazy reference on `student_model` (the mechanism of
  `ref * 2`, with the rule as its operation): every read computes the rate of the current
  model; setting a value on the field drops the operation, so an explicit rate wins.
  """
  rule = config_dict._Op(  # pylint: disable=protected-access
      _learning_rate_of_model, [config.get_ref("student_model")])
  config.optimizer.learning_rate = ml_collections.FieldReference(
      CIFAR_LEARNING_RATE, field_type=float, op=rule)
  return config


def cifar_run(method: str, model: str, dataset: str = "cifar100") -> ml_collections.ConfigDict:
  """One CIFAR-recipe run of `method` training `model` (the student, or a CE teacher).

  Its learning rate follows `student_model` until set (`follow_student_model`).
  """
  config = config_schema.base_config()
  config.method = method
  config.dataset = dataset
  config.student_model = model
  config[method] = methods.default_config(method)
  return follow_student_model(config)


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
