"""Teacher pre-training: resnet32x4 on CIFAR-100 with CE (the RepDistiller/mdistiller recipe).

    python -m jaxkd.main --config=configs/teacher_cifar100.py --workdir=$HOME/jaxkd/r32x4_c100

Reference: RepDistiller reports 79.42% for this teacher. Not run here: CIFAR-100 cannot be
downloaded on the build machines, whose CPU trains resnet32x4 at a few images/s.
"""

from jaxkd import recipes


def get_config():
  return recipes.cifar_run("ce", "resnet32x4", "cifar100")
