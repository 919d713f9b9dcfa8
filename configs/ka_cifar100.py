"""Knowledge Adjustment (probability shift), resnet32x4 ▶ resnet8x4 on CIFAR-100.

KD (T=4, CE 0.1, KD 0.9) whose teacher is corrected where it is wrong; `ka_variant=lsr`
uses label smoothing instead (ρ = 0.9). Teacher stage first unless a teacher is given:

    python -m jaxkd.main --config=configs/ka_cifar100.py --workdir=$HOME/jaxkd/ka_c100 \
        [--config.teacher_checkpoint=$HOME/jaxkd/r32x4_c100] [--config.stages.student.ka.ka_variant=lsr]

KA ▶ DTD: `--config.stages.student.ka.transforms=ka,dtd`. The paper reports CIFAR-100,
CINIC-10 and Tiny ImageNet numbers that could not be retrieved (docs/methods.md §10). Not run
here on CIFAR-100; `--config.dataset=cifar10_jpeg` runs it on the offline CIFAR-10 JPEGs.
"""

from jaxkd import recipes


def get_config():
  return recipes.cifar_distillation("ka", "resnet32x4", "resnet8x4", "cifar100")
