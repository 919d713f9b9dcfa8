"""Defaults shared by every config: CE training of resnet8x4 on CIFAR-100 (docs/methods.md §10).

    python -m jaxkd.main --config=configs/default.py --workdir=/tmp/jaxkd/default

The CIFAR recipe (`jaxkd.recipes.cifar_run`): `--config.student_model=MobileNetV2` (or a
ShuffleNet) also lowers the learning rate to 0.01, unless `--config.optimizer.learning_rate`
is given.
"""

from jaxkd import recipes


def get_config():
  return recipes.cifar_run("ce", "resnet8x4", "cifar100")
