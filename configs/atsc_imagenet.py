"""ATSC, ResNet50 ▶ ResNet18 on ImageNet (ATSC README: w=10, f=2, lr 0.01, bs 64, 120 epochs).

    python -m jaxkd.main --config=configs/atsc_imagenet.py --workdir=gs://BUCKET/atsc_in1k \
        --config.data_dir=gs://BUCKET/tensorflow_datasets \
        --config.teacher_checkpoint=gs://BUCKET/r50_in1k

SGD m0.9, lr 0.01 for student and teacher (linked fields, see `atsc_cifar100.py`), wd 1e-4,
×0.1 after epochs 30/60/90, global batch 64 (the README's `--batch_size 64` split over 4 GPUs;
here batch norm reduces over the global batch). The teacher is a jaxkd export of a trained
ResNet50 (the reference uses torchvision's). Without `--config.teacher_checkpoint` the
`teacher` stage trains one with CE first, on its own ImageNet recipe (batch 512, lr 0.2,
100 epochs). No published number could be retrieved (docs/methods.md §10). Not run here.
"""

from jaxkd import config_schema, recipes
from jaxkd.methods import atsc


def get_config():
  student = recipes.imagenet_run("atsc", "ResNet18")
  student.atsc.anchor_weight = 10.0
  student.optimizer = config_schema.sgd_config(learning_rate=0.01, weight_decay=1e-4,
                                               decay_epochs=(30, 60, 90))
  atsc.share_student_optimizer(student)
  student.batch_size = student.eval_batch_size = 64
  student.num_epochs = 120
  teacher = recipes.imagenet_run("ce", "ResNet50")
  return config_schema.teacher_then_student(
      teacher, student, teacher_own_fields=("batch_size", "eval_batch_size", "num_epochs"))
