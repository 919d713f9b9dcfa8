"""CIFAR-100 with 50 training images per class, students from scratch: ranks methods on a CPU.

Every method trains a resnet8 from scratch on a fixed, class-balanced subset of 50 images of
every class (5,000 images, `train_examples_per_class`), distilling from a published
teacher trained on all of CIFAR-100 and imported from ../shared/teachers, 30 epochs of
batch 64, SGD lr 0.05 cosine, weight decay 5e-4; 5,000 other training images are the
validation split and every run is tested on the full 10,000-image test set. With so few
labelled images, the teacher's soft targets carry much of what the student learns, so the
methods separate within a CPU budget (see the pilots in the notes):

    python -m benchmarks.study --suite cifar100_lowdata_cpu --workdir DIR --data_dir D \
        --replicas 3 --write-results
"""

from benchmarks.study_suite import MethodEntry, Suite
from benchmarks.suites import _cifar100_r56_r20 as pair

TEACHER = pair.STUDENT_CHECKPOINT  # resnet20, 68.83%: see the pilots for the choice.
STUDENT = "resnet8"
PER_CLASS = 50
EPOCHS = 30
GENEROUS_LEARNING_RATE = 0.01


def _methods() -> tuple[MethodEntry, ...]:
  """The issue's methods; the ablation of SKD's guard is left to the fine-tuning suites."""
  entries = pair.methods(
      dkd_warmup_epochs=3, generous_from_teacher=True,
      generous_overrides={"optimizer.learning_rate": GENEROUS_LEARNING_RATE},
      generous_start=(f"G starts from the teacher and is trained on the same subset, lr "
                      f"{GENEROUS_LEARNING_RATE} cosine (the paper trains G from scratch on all "
                      "the data)"),
      dkd_ours=("β = 2 (mdistiller's resnet56 → resnet20 value; no published value for "
                "resnet8), warm-up 3 epochs (mdistiller's 20 of 240, scaled to 30)"))
  return tuple(entry for entry in entries if entry.label != "student_friendly_no_guard")


def get_suite() -> Suite:
  return Suite(
      name="cifar100_lowdata_cpu",
      purpose=("ranks every method on a data-efficient CIFAR-100 protocol (resnet8 from "
               f"scratch on {PER_CLASS} images per class, a published {TEACHER.model} "
               "teacher); it does not reproduce any paper's full-data numbers"),
      dataset="cifar100",
      teacher=TEACHER,
      student_model=STUDENT,
      schedule={"num_epochs": EPOCHS, "batch_size": 64, "optimizer.learning_rate": 0.05,
                "optimizer.schedule": "cosine", "optimizer.weight_decay": 5e-4,
                "train_examples_per_class": PER_CLASS, "validation_examples": 5000,
                "eval_every_epochs": 5},
      methods=_methods(),
      seeds=(0, 1, 2),
      notes=(
          "Pilots, seed 0, this protocol through `benchmarks.study --methods ce,kd --seeds 0`: "
          "with the resnet20 teacher (68.83%), CE 22.00% and KD 27.83% final test accuracy "
          "(KD − CE = +5.83 points; 7.0 and 11.4 min on 2 shared cores). Before it, through "
          "the command line on an image folder of the first 50 training images of every class "
          "(no validation split), with the resnet56 teacher (72.63%) at T = 4: CE 23.66 / "
          "22.04% and KD 26.53 / 26.98% (seeds 0 / 1; about 13 and 20 min a run). The "
          "resnet20 teacher separates KD from CE at least as well, at about half the cost of "
          "a resnet56 forward (and backward, for ATSC), so the suite uses it.",
          "Why a subset: on the full training set a CPU affords under an epoch of a student "
          "from scratch, where KD and CE did not separate (see `cifar100_r56_r20_cpu`). The "
          "teacher was trained on all 50,000 training images, the validation split included, "
          "so the 'at best validation' selection of a run that follows the teacher closely is "
          "slightly optimistic; the headline is the final accuracy.",
          "SimKD and ATSC train their projector from scratch with the student, as in their "
          "papers. The generous teacher G starts from the teacher (a choice of ours: training "
          "G from scratch on 50 images per class would give a far weaker teacher than the "
          "one it replaces)."),
      long=True)
