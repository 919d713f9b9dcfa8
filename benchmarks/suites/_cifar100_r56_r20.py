"""What the CIFAR-100 resnet56 → resnet20 suites share: the checkpoints, the methods with
their published settings and our reconstruction choices, and the published numbers.

Published numbers (docs/methods.md §10, "CIFAR-100 top-1 (%)", resnet56 → resnet20 row): T and S
from the RepDistiller README, KD and DKD from the mdistiller README, KD+LS from the LS-KD
README. No other method has a published number for this pair.
"""

import os

from jaxkd.methods import atsc

from benchmarks.study_suite import (SHARED_TEACHERS_DIR, TEACHER_ROW, ImportedCheckpoint,
                                    MethodEntry, Published, TeacherStage)

# The normalisation both shared CIFAR-100 checkpoints were trained with (../shared/teachers).
MEAN = (0.5070, 0.4865, 0.4409)
STD = (0.2673, 0.2564, 0.2761)
TEACHER = ImportedCheckpoint(os.path.join(SHARED_TEACHERS_DIR, "cifar100_resnet56.pth"),
                             "resnet56", MEAN, STD)
STUDENT_CHECKPOINT = ImportedCheckpoint(
    os.path.join(SHARED_TEACHERS_DIR, "cifar100_resnet20.pth"), "resnet20", MEAN, STD)

PUBLISHED_TEACHER = Published(TEACHER_ROW, 72.34, "RepDistiller README")


def published_student(row: str) -> Published:
  """RepDistiller's resnet20 trained alone, for `row` (the CE row, or the starting student)."""
  return Published(row, 69.06, "RepDistiller README")


PUBLISHED_METHODS = (Published("kd", 70.66, "mdistiller README"),
                     Published("dkd", 71.97, "mdistiller README"),
                     Published("lskd", 71.43, "LS-KD README"))
CHECKPOINTS_NOTE = (
    "The published T and S are RepDistiller's own resnet56 and resnet20; the shared "
    "checkpoints used here (`cifar100_resnet56.pth`, `cifar100_resnet20.pth`) publish 72.63% "
    "and 68.83%, and the first rows give what jaxkd measures for them.")

GUARD_FIELD = "simplifier_ce_weight"  # jaxkd.methods.student_friendly's CE guard weight.
SKD_OURS = ("the simplifier (self-attention over the batch axis, 1 head, d = C, residual) is a "
            "reconstruction; its CE guard (weight 1) and the CE/KD weights 1/1 are jaxkd's")


def methods(dkd_warmup_epochs: int = 20, generous_from_teacher: bool = False,
            generous_overrides: dict | None = None, generous_start: str = "",
            dkd_ours: str = "") -> tuple[MethodEntry, ...]:
  """Every method that applies to the pair, with its published CIFAR-100 settings.

  DKD uses mdistiller's β = 2 for resnet56 → resnet20 (configs/cifar100/dkd/res56_res20.yaml);
  `dkd_warmup_epochs` shortens its 20-epoch warm-up for short runs. The Generous Teacher
  trains G from scratch unless `generous_from_teacher` (G starts from the teacher), with
  `generous_overrides` over the suite's schedule, described by `generous_start`.
  """
  generous_start = generous_start or (
      "G starts from the teacher (init_from_teacher)" if generous_from_teacher
      else "G from scratch, on the student's schedule")
  return (
      MethodEntry("ce", "ce"),
      MethodEntry("kd", "kd"),
      MethodEntry("dkd", "dkd", {"beta": 2.0, "warmup_epochs": dkd_warmup_epochs},
                  ours=dkd_ours),
      MethodEntry("lskd", "lskd"),
      MethodEntry("ka", "ka"),
      MethodEntry("dtd", "dtd",
                  ours=("τ_i clamped at τ_min = 1, τ_i² factor on each sample's KL, β = 1, γ = 2 "
                        "(TextBrewer's example; the paper's values were not retrieved)")),
      MethodEntry("student_friendly", "student_friendly", ours=SKD_OURS),
      MethodEntry("student_friendly_no_guard", "student_friendly", {GUARD_FIELD: 0.0},
                  ours=f"ablation: jaxkd's CE guard off ({GUARD_FIELD} = 0); else as "
                       "student_friendly"),
      MethodEntry("simkd", "simkd"),
      MethodEntry("atsc", "atsc", configure=atsc.share_student_optimizer,
                  ours=("evaluated and exported through the projector and the adapted teacher "
                        "head (the released code evaluates the student's own, untrained head)")),
      MethodEntry("generous_kd", "kd",
                  teacher_stages=(TeacherStage("generous", "generous",
                                               {"init_from_teacher": generous_from_teacher},
                                               dict(generous_overrides or {})),),
                  ours=("generous teacher G: k = 2, λ = 1, each model's own std over all C "
                        f"logits, no TCKD (the paper's k and λ are unknown); {generous_start}")),
  )
