"""Vanilla knowledge distillation (Hinton et al., 2015), docs/methods.md §2.

    L = w_ce · CE(z_s, y) + w_kd · T² · mean_i KL(σ(z_t,i / T) ‖ σ(z_s,i / T))

The teacher is frozen (eval mode, stop-gradient). Defaults are the CIFAR-100
mdistiller/RepDistiller recipe: T = 4, w_ce = 0.1, w_kd = 0.9. `transforms` rewrites the
teacher target first (KA in ka.py, DTD in dtd.py, LS in lskd.py; `targets.py` composes
them), which is how the `ka`, `dtd` and `lskd` methods are built; any combination is a
config change.
"""

import ml_collections

from jaxkd import losses, methods
from jaxkd.methods import logit_method, targets
from jaxkd.ranges import NON_NEGATIVE, POSITIVE, Range


@methods.register("kd")
class KnowledgeDistillation(logit_method.LogitMethod):
  default_transforms = ""
  @classmethod
  def traced_settings(cls) -> tuple[str, ...]:
    return ("temperature", "ce_weight", "kd_weight", *targets.transform_traced())

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

  def logit_loss(self, teacher_logits, student_logits, labels, step_info, extra):
    del step_info, extra
    hp = self.hparams
    target, metrics = targets.build_target(teacher_logits, student_logits, labels, hp)
    ce = losses.batch_mean(losses.cross_entropy(student_logits, labels))
    kd = losses.batch_mean(targets.kd_term(target))
    metrics.update({"loss/ce": ce, "loss/kd": kd})
    return hp.ce_weight * ce + hp.kd_weight * kd, metrics
