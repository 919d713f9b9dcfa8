"""ATSC, resnet32x4 ▶ resnet8x4 on CIFAR-100 (ATSC README command: b=1, w=1, f=2, c=d=0, lr 0.05).

Two stages, `teacher` (CE) then `student` (ATSC); a trained teacher skips the first:

    python -m jaxkd.main --config=configs/atsc_cifar100.py --workdir=$HOME/jaxkd/atsc_c100
    python -m jaxkd.main --config=configs/atsc_cifar100.py --workdir=$HOME/jaxkd/atsc_c100 \
        --config.teacher_checkpoint=$HOME/jaxkd/r32x4_c100

CIFAR recipe (bs 64, 240 epochs, SGD m0.9, wd 5e-4 on all parameters, ×0.1 after epochs
150/180/210). The teacher trains with the student's learning rate, as in the reference code
(one optimizer): the fields of `stages.student.teacher_optimizer` are linked to
`stages.student.optimizer`, so `--config.stages.student.optimizer.learning_rate=X` changes
both, and so does the recipe's 0.01 for a MobileNetV2/ShuffleNet student
(`--config.stages.student.student_model=MobileNetV2`). The head update
(`teacher_head_params='bias'`, as the code) uses the same settings with its own momentum.
The student is evaluated and exported as backbone + projector + the adapted teacher head
(the released code evaluates the student's untrained own head instead). No published number
could be retrieved (docs/methods.md §10); SimKD reaches 78.08% on this pair.
`--config.dataset=cifar10_jpeg` runs it on the offline CIFAR-10 JPEGs.
"""

from jaxkd import recipes
from jaxkd.methods import atsc


def get_config():
  config = recipes.cifar_distillation("atsc", "resnet32x4", "resnet8x4", "cifar100")
  atsc.share_student_optimizer(config.stages.student)
  return config
