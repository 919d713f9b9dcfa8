"""Vanilla knowledge distillation (Hinton et al., 2015), methods.md §2.

    L = w_ce · CE(z_s, y) + w_kd · T² · mean_i KL(σ(z_t,i / T) ‖ σ(z_s,i / T))

The teacher is frozen (eval mode, stop-gradient). Defaults are the CIFAR-100
mdistiller/RepDistiller recipe: T = 4, w_ce = 0.1, w_kd = 0.9.
"""

import ml_collections

from jaxkd import losses
from jaxkd.methods import base


class KnowledgeDistillation(base.Method):
  name = "kd"
  teacher_mode = base.TeacherMode.FROZEN

  @classmethod
  def default_config(cls) -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict({"temperature": 4.0, "ce_weight": 0.1, "kd_weight": 0.9})

  def loss(self, nets, params, batch_stats, batch, rng, step_info):
    del rng, step_info
    hp = self.hparams
    ((_, teacher_logits),) = base.frozen_teacher_outputs(nets, params, batch_stats, batch["image"])
    (_, logits), student_stats = base.apply_model(
        nets.student, params["student"], batch_stats["student"], batch["image"], train=True)
    ce = losses.masked_mean(losses.cross_entropy(logits, batch["label"]))
    kd = losses.masked_mean(losses.softened_kl(teacher_logits, logits, hp.temperature))
    total = hp.ce_weight * ce + hp.kd_weight * kd
    metrics = {"loss/ce": ce, "loss/kd": kd,
               "train/accuracy": base.accuracy(logits, batch["label"]),
               "teacher/train_accuracy": base.accuracy(teacher_logits, batch["label"])}
    return total, (dict(batch_stats, student=student_stats), metrics)
