"""SimKD, resnet32x4 ▶ resnet8x4 on CIFAR-100 (SimKD README: f=2, b=1, c=d=0, lr 0.05).

Two stages, `teacher` (CE) then `student` (SimKD); a trained teacher skips the first:

    python -m jaxkd.main --config=configs/simkd_cifar100.py --workdir=$HOME/jaxkd/simkd_c100
    python -m jaxkd.main --config=configs/simkd_cifar100.py --workdir=$HOME/jaxkd/simkd_c100 \
        --config.teacher_checkpoint=$HOME/jaxkd/r32x4_c100

The student is evaluated and exported as backbone + projector + the teacher's frozen
classifier. Reference: the SimKD README reports 78.08% (teacher 79.42%, student alone
73.09%). Not run here (no CIFAR-100 offline). `--config.dataset=cifar10_jpeg` runs it on
the offline CIFAR-10 JPEGs.
"""

from jaxkd import recipes


def get_config():
  return recipes.cifar_distillation("simkd", "resnet32x4", "resnet8x4", "cifar100")
