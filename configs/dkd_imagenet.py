"""DKD, ResNet34 ▶ ResNet18 on ImageNet (mdistiller: α=1, β=0.5, T=1, no warm-up, bs 512).

    python -m jaxkd.main --config=configs/dkd_imagenet.py --workdir=gs://BUCKET/dkd_in1k \
        --config.data_dir=gs://BUCKET/tensorflow_datasets \
        --config.teacher_checkpoint=gs://BUCKET/r34_in1k

Reference: mdistiller 71.70%. Not run here.
"""

from jaxkd import config_schema, recipes


def get_config():
  student = recipes.imagenet_run("dkd", "ResNet18")
  student.dkd.beta = 0.5
  student.dkd.temperature = 1.0
  student.dkd.warmup_epochs = 1
  return config_schema.teacher_then_student(recipes.imagenet_run("ce", "ResNet34"), student)
