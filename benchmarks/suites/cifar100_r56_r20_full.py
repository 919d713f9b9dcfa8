"""CIFAR-100 resnet56 → resnet20 on the RepDistiller / mdistiller protocol, three seeds.

240 epochs of batch 64, SGD momentum 0.9, lr 0.05 ×0.1 after epochs 150/180/210, weight
decay 5e-4, each method with its published CIFAR-100 settings (configs/*_cifar100.py; DKD's
β = 2 for this pair). Teacher: the shared resnet56 checkpoint imported with its
normalisation; student resnet20 from scratch; 5,000 training images held out for selection.
An accelerator's job (the estimate is printed before it starts):

    python -m benchmarks.study --suite cifar100_r56_r20_full --workdir DIR --data_dir D \
        [--shard i/n] --write-results
"""

from benchmarks.study_suite import Suite
from benchmarks.suites import _cifar100_r56_r20 as pair


def get_suite() -> Suite:
  return Suite(
      name="cifar100_r56_r20_full",
      purpose="every method on resnet56 → resnet20, the published CIFAR-100 protocol, 3 seeds",
      dataset="cifar100",
      teacher=pair.TEACHER,
      student_model="resnet20",
      schedule={"num_epochs": 240, "batch_size": 64, "optimizer.learning_rate": 0.05,
                "optimizer.schedule": "step", "optimizer.decay_epochs": (150, 180, 210),
                "optimizer.weight_decay": 5e-4, "validation_examples": 5000,
                "eval_every_epochs": 1},
      methods=pair.methods(),
      seeds=(0, 1, 2),
      published=(pair.PUBLISHED_TEACHER, pair.published_student("ce"), *pair.PUBLISHED_METHODS),
      notes=(pair.CHECKPOINTS_NOTE,
             "The published numbers train on all 50,000 training images and report the last "
             "epoch (RepDistiller) or a mean of 5 runs (mdistiller); this suite trains on "
             "45,000 and keeps 5,000 to select the 'at best validation' checkpoint."),
      long=True)
