"""Decoupled knowledge distillation (Zhao et al., CVPR 2022), docs/methods.md §3.

    L_TCKD = T² · mean_i KL(b_t,i ‖ b_s,i)        b = [p_y, 1 − p_y], p = σ(z / T)
    L_NCKD = T² · mean_i KL(p̃_t,i ‖ p̃_s,i)        p̃ = softmax over the classes c ≠ y
    L = w_ce · CE(z_s, y) + min(epoch / warmup, 1) · (α · L_TCKD + β · L_NCKD)

`epoch` is 1-based (the epoch being trained), as in mdistiller; the warm-up scales
the distillation loss, not the learning rate. Defaults are mdistiller's CIFAR-100
`CFG.DKD`: α = 1, β = 8, T = 4, warm-up 20 epochs, w_ce = 1. With two classes the
non-target distribution has one class and L_NCKD is exactly zero.

`transforms` ('ka' with 'ps', 'dtd', 'ls'; see kd.py) rewrite the teacher target first.
DKD+LS as in LS-KD: `transforms='ls'`, T = τ = 2, and α, β multiplied by the KD weight (9).
"""

import ml_collections

from jaxkd import losses, methods
from jaxkd.methods import logit_method, targets
from jaxkd.ranges import AT_LEAST_ONE, NON_NEGATIVE, POSITIVE, Range


@methods.register("dkd")
class DecoupledKD(logit_method.LogitMethod):
  @classmethod
  def traced_settings(cls) -> tuple[str, ...]:
    return ("alpha", "beta", "temperature", "ce_weight", *targets.transform_traced())

  @classmethod
  def default_config(cls) -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict({"alpha": 1.0, "beta": 8.0, "temperature": 4.0,
                                      "ce_weight": 1.0, "warmup_epochs": 20,
                                      **targets.transform_defaults()})

  @classmethod
  def ranges(cls) -> dict[str, Range]:
    return {"alpha": NON_NEGATIVE, "beta": NON_NEGATIVE, "temperature": POSITIVE,
            "ce_weight": NON_NEGATIVE,
            "warmup_epochs": AT_LEAST_ONE,  # Divides the epoch; 1: no warm-up.
            **targets.transform_ranges()}

  def validate(self) -> None:
    super().validate()
    targets.validate_transforms(self.hparams, self.name, accepts_distribution=False)

  def logit_loss(self, teacher_logits, student_logits, labels, step_info, extra):
    del extra
    hp = self.hparams
    target, metrics = targets.build_target(teacher_logits, student_logits, labels, hp)
    ce = losses.batch_mean(losses.cross_entropy(student_logits, labels))
    tckd, nckd = targets.decoupled_terms(target, labels)
    tckd, nckd = losses.batch_mean(tckd), losses.batch_mean(nckd)
    warmup = losses.dkd_warmup_factor(step_info.epoch, hp.warmup_epochs)
    metrics.update({"loss/ce": ce, "loss/tckd": tckd, "loss/nckd": nckd, "dkd/warmup": warmup})
    return hp.ce_weight * ce + warmup * (hp.alpha * tckd + hp.beta * nckd), metrics
