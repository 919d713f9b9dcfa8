"""ATSC with two teachers, resnet32x4 + wrn_40_2 ▶ resnet8x4 on CIFAR-100 (a reconstruction).

Three stages: `t0` (resnet32x4, CE), `t1` (wrn_40_2, CE), then `student` (ATSC with both):

    python -m jaxkd.main --config=configs/atsc_multi_cifar100.py --workdir=$HOME/jaxkd/atsc2_c100

Each teacher gets its own projector, feature loss, L2 anchor (w=1) and head update; the
prediction averages the teachers' shared-head logits (`--config.stages.student.atsc.combine=
mean_probs` averages their probabilities). The multi-teacher variant is not in the released
code (docs/methods.md §6, pitfall 5). Finished stages are skipped, so teachers trained earlier can
be reused by running in the same workdir. CIFAR recipe as `atsc_cifar100.py`;
`--config.dataset=cifar10_jpeg` runs it on the offline CIFAR-10 JPEGs.
"""

from jaxkd import config_schema, recipes
from jaxkd.methods import atsc

TEACHERS = ("resnet32x4", "wrn_40_2")


def get_config():
  student = atsc.share_student_optimizer(recipes.cifar_run("atsc", "resnet8x4", "cifar100"))
  student.teacher_model = ",".join(TEACHERS)
  student.teacher_checkpoint = ",".join(f"@t{i}" for i in range(len(TEACHERS)))
  stages = {f"t{i}": recipes.cifar_run("ce", name, "cifar100") for i, name in enumerate(TEACHERS)}
  return config_schema.pipeline_config({**stages, "student": student})
