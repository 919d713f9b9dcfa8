"""DKD, resnet32x4 ▶ resnet8x4 on the offline CIFAR-10 JPEGs (teacher stage first).

    python -m jaxkd.main --config=configs/dkd_cifar10_jpeg.py --workdir=$HOME/jaxkd/dkd_c10j \
        [--config.teacher_checkpoint=$HOME/jaxkd/r32x4_c10j]
"""

from jaxkd import recipes


def get_config():
  return recipes.cifar_distillation("dkd", "resnet32x4", "resnet8x4", "cifar10_jpeg")
