"""Vanilla KD, resnet32x4 ▶ resnet8x4 on CIFAR-100 (mdistiller: T=4, CE weight 0.1, KD 0.9).

Two stages, `teacher` (CE) then `student` (KD); a trained teacher skips the first:

    python -m jaxkd.main --config=configs/kd_cifar100.py --workdir=$HOME/jaxkd/kd_c100
    python -m jaxkd.main --config=configs/kd_cifar100.py --workdir=$HOME/jaxkd/kd_c100 \
        --config.teacher_checkpoint=$HOME/jaxkd/r32x4_c100

Reference: mdistiller reports 73.33% (student alone 72.50%). Not run here (no CIFAR-100
offline).
"""

from jaxkd import recipes


def get_config():
  return recipes.cifar_distillation("kd", "resnet32x4", "resnet8x4", "cifar100")
