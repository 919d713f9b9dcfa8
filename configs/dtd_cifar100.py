"""Dynamic Temperature Distillation (FLSW), resnet32x4 ▶ resnet8x4 on CIFAR-100.

KD with per-sample temperatures τ_i = τ₀ + β(mean w − w_i), τ₀ = 4, β = 1, γ = 2, clamped at 1;
`--config.stages.student.dtd.dtd_weight=cwsm` for the CWSM weights:

    python -m jaxkd.main --config=configs/dtd_cifar100.py --workdir=$HOME/jaxkd/dtd_c100 \
        [--config.teacher_checkpoint=$HOME/jaxkd/r32x4_c100]

Not run here on CIFAR-100 (no published numbers retrieved either, docs/methods.md §10);
`--config.dataset=cifar10_jpeg` runs it on the offline CIFAR-10 JPEGs.
"""

from jaxkd import recipes


def get_config():
  return recipes.cifar_distillation("dtd", "resnet32x4", "resnet8x4", "cifar100")
