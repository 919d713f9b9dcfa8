"""Generous Teacher on CIFAR-100: standard teacher ▶ generous teacher ▶ KD student.

Three stages, each its own sub-workdir, resumable, skipped once finished:
`standard` (resnet32x4, CE), `generous` (resnet32x4 trained with CE + λ·NCKD from the
standard teacher at temperature k·std of the logits, k = 2, λ = 1), and `student`
(resnet8x4 distilled from the generous teacher with KD, T=4, CE 0.1, KD 0.9):

    python -m jaxkd.main --config=configs/generous_teacher_cifar100.py \
        --workdir=$HOME/jaxkd/gt_c100 [--config.teacher_checkpoint=$HOME/jaxkd/r32x4_c100]

The generous stage's open choices are `--config.stages.generous.generous.<field>`:
`std_multiple` (k), `nckd_weight` (λ), `tckd_weight`, `std_source` ('own'|'teacher') and
`std_classes` ('all'|'non_target'). A given teacher checkpoint replaces the `standard` stage. Any distiller can be the last
stage: `--config.stages.student.method=dkd` with a `dkd` section. Not run here; the
paper's numbers and its k and λ were not retrieved (docs/methods.md §9).
"""

from jaxkd import config_schema, recipes

TEACHER, STUDENT = "resnet32x4", "resnet8x4"


def get_config():
  generous = recipes.cifar_run("generous", TEACHER, "cifar100")
  generous.teacher_model, generous.teacher_checkpoint = TEACHER, "@standard"
  student = recipes.cifar_run("kd", STUDENT, "cifar100")
  student.teacher_model, student.teacher_checkpoint = TEACHER, "@generous"
  return config_schema.pipeline_config({
      "standard": recipes.cifar_run("ce", TEACHER, "cifar100"),
      "generous": generous, "student": student})
