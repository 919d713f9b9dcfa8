"""Vanilla knowledge distillation (Hinton et al., 2015), methods.md §2, with teacher transforms.

    L = w_ce · CE(z_s, y) + w_kd · T² · mean_i KL(σ(z_t,i / T) ‖ σ(z_s,i / T))

The teacher is frozen (eval mode, stop-gradient). Defaults are the CIFAR-100
mdistiller/RepDistiller recipe: T = 4, w_ce = 0.1, w_kd = 0.9. `transforms` rewrites the
teacher target first (`jaxkd.methods.targets`: KA, DTD, LS), which is how the `ka`,
`dtd` and `lskd` methods are built; any combination is a config change.
"""

import ml_collections

from jaxkd import losses
from jaxkd.methods import base, targets
from jaxkd.ranges import NON_NEGATIVE, POSITIVE, Range


class KnowledgeDistillation(base.Method):
  name = "kd"
  teacher_mode = base.TeacherMode.FROZEN
  default_transforms = ""

  @classmethod
  def default_config(cls) -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict({
        "temperature": 4.0, "ce_weight": 0.1, "kd_weight": 0.9,
        **targets.transform_defaults(), "transforms": cls.default_transforms})

  @classmethod
  def ranges(cls) -> dict[str, Range]:
    return {"temperature": POSITIVE, "ce_weight": NON_NEGATIVE,
            "kd_weight": NON_NEGATIVE, **targets.transform_ranges()}

  def validate(self) -> None:
    super().validate()
    targets.validate_transforms(self.hparams, self.name, accepts_distribution=True)

  def logit_loss(self, teacher_logits, student_logits, labels, step_info):
    """(total, metrics) of the loss on given logits: the part that is pure arithmetic."""
    del step_info
    hp = self.hparams
    target, metrics = targets.build_target(teacher_logits, student_logits, labels, hp)
    ce = losses.masked_mean(losses.cross_entropy(student_logits, labels))
    kd = losses.masked_mean(targets.kd_term(target))
    metrics.update({"loss/ce": ce, "loss/kd": kd})
    return hp.ce_weight * ce + hp.kd_weight * kd, metrics

  def loss(self, nets, params, batch_stats, batch, rng, step_info):
    del rng
    ((_, teacher_logits),) = base.frozen_teacher_outputs(nets, params, batch_stats, batch["image"])
    (_, logits), student_stats = base.apply_model(
        nets.student, params["student"], batch_stats["student"], batch["image"], train=True)
    total, metrics = self.logit_loss(teacher_logits, logits, batch["label"], step_info)
    metrics.update({"train/accuracy": base.accuracy(logits, batch["label"]),
                    "teacher/train_accuracy": base.accuracy(teacher_logits, batch["label"])})
    return total, (dict(batch_stats, student=student_stats), metrics)
