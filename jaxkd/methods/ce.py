"""Plain cross-entropy training: how teachers (and baseline students) are made.

    L = CE(z_s, y)   (mean over the batch, optional label smoothing)
"""

import ml_collections

from jaxkd import losses, methods
from jaxkd.methods import base
from jaxkd.ranges import PROBABILITY, Range


@methods.register("ce")
class CrossEntropy(base.Method):
  teacher_mode = base.TeacherMode.NONE
  @classmethod
  def traced_settings(cls) -> tuple[str, ...]:
    return ("label_smoothing",)

  @classmethod
  def default_config(cls) -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict({"label_smoothing": 0.0})

  @classmethod
  def ranges(cls) -> dict[str, Range]:
    return {"label_smoothing": PROBABILITY}

  def loss(self, nets, params, batch_stats, batch, rng, step_info):
    del rng, step_info
    (_, logits), student_stats = base.apply_model(
        nets.student, params["student"], batch_stats["student"], batch["image"], train=True)
    ce = losses.batch_mean(losses.cross_entropy(
        logits, batch["label"], label_smoothing=self.hparams.label_smoothing))
    new_stats = dict(batch_stats, student=student_stats)
    return ce, (new_stats, {"loss/ce": ce, "train/accuracy": base.accuracy(logits, batch["label"])})
