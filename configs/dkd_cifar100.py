"""DKD, resnet32x4 ▶ resnet8x4 on CIFAR-100 (mdistiller: α=1, β=8, T=4, warm-up 20 epochs).

    python -m jaxkd.main --config=configs/dkd_cifar100.py --workdir=$HOME/jaxkd/dkd_c100 \
        --config.teacher_checkpoint=$HOME/jaxkd/r32x4_c100

Reference: mdistiller reports 76.32%. Not run here (no CIFAR-100 offline).
"""

from jaxkd import recipes


def get_config():
  return recipes.cifar_distillation("dkd", "resnet32x4", "resnet8x4", "cifar100")
