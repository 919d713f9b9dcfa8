"""Logit-standardised KD, resnet32x4 ▶ resnet8x4 on CIFAR-100 (τ = 2, KD weight 9, CE 0.1).

    python -m jaxkd.main --config=configs/lskd_cifar100.py --workdir=$HOME/jaxkd/lskd_c100 \
        [--config.teacher_checkpoint=$HOME/jaxkd/r32x4_c100]

Reference: the LS-KD README reports 76.62% (KD+LS) for this pair. Not run here.
DKD+LS: `configs/dkd_cifar100.py` with `--config.stages.student.dkd.transforms=ls`,
`temperature=2`, `alpha=9`, `beta=72` (α, β times the KD weight, as the reference does).
"""

from jaxkd import recipes


def get_config():
  return recipes.cifar_distillation("lskd", "resnet32x4", "resnet8x4", "cifar100")
