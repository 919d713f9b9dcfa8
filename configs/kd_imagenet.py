"""Vanilla KD, ResNet34 ▶ ResNet18 on ImageNet (mdistiller: T=1, CE 0.5, KD 0.5, bs 512, lr 0.2).

    python -m jaxkd.main --config=configs/kd_imagenet.py --workdir=gs://BUCKET/kd_in1k \
        --config.data_dir=gs://BUCKET/tensorflow_datasets \
        --config.teacher_checkpoint=gs://BUCKET/r34_in1k

The teacher is a jaxkd run of ResNet34 (`--config.method=ce`, the stage this pipeline
trains first when no teacher checkpoint is given). Reference: mdistiller 71.03%
(torchvision's R34 teacher, 73.31%). Not run here.
"""

from jaxkd import config_schema, recipes


def get_config():
  student = recipes.imagenet_run("kd", "ResNet18")
  student.kd.temperature = 1.0
  student.kd.ce_weight = 0.5
  student.kd.kd_weight = 0.5
  return config_schema.teacher_then_student(recipes.imagenet_run("ce", "ResNet34"), student)
