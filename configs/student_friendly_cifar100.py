"""Student-friendly KD (softening + learning simplifier), resnet32x4 ▶ resnet8x4 on CIFAR-100.

T = 4, CE 1, KD 1, and a CE guard (1) on the simplified logits; the simplifier attends over
the batch axis, with a residual connection, one head, dim = C (a reconstruction: docs/methods.md §7):

    python -m jaxkd.main --config=configs/student_friendly_cifar100.py \
        --workdir=$HOME/jaxkd/skd_c100 [--config.teacher_checkpoint=$HOME/jaxkd/r32x4_c100]

Not run here on CIFAR-100 (the paper's tables were not retrieved);
`--config.dataset=cifar10_jpeg` runs it on the offline CIFAR-10 JPEGs.
"""

from jaxkd import recipes


def get_config():
  return recipes.cifar_distillation("student_friendly", "resnet32x4", "resnet8x4", "cifar100")
