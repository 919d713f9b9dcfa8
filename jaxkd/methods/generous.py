"""Generous Teacher, stage 1 (Ding et al., Image and Vision Computing 2024), docs/methods.md §9.

Trains a generous teacher G (the run's "student" model; usually the standard teacher's
architecture, from scratch) on the labels and on the non-target knowledge of a frozen
standard teacher S, at a temperature that is a multiple k of each sample's logit std:

    T_S,i = k · (std(z_S,i) + ε)      T_G,i = k · (std(z_G,i) + ε)   (own std, ddof = 1, ε = 1e-7)
    L = w_ce · CE(z_G, y) + λ · k² · mean_i KL(p̃_S,i ‖ p̃_G,i)  [+ w_tckd · k² · TCKD]
    p̃ = softmax over the classes c ≠ y at the sample's temperature (DKD's NCKD)

The k² factor follows LS-KD, whose standardised logits at base τ are exactly the logits
at temperature τ·std (the std is LS-KD's `lskd.logit_std`). Only the abstract is verified: k, λ, the std and TCKD are
settings (`std_source='teacher'` gives both models S's temperature; `std_classes=
'non_target'` takes the std over the C − 1 non-target logits; `tckd_weight > 0` adds the
target/non-target term). Defaults: k = 2 (LS-KD's base τ), λ = 1, std over all C logits
of each model's own, no TCKD ("only non-target knowledge"); the paper's values are
unknown (suggested sweep: k ∈ {1..4}, λ ∈ {1, 2, 4, 8}). G starts from scratch by default;
`init_from_teacher=True` starts it from S's weights (G must then be S's architecture), the
paper's other option.
G is exported as a plain model, so the next stage distils a student from it as from any
teacher (`configs/generous_teacher_cifar100.py` chains all three stages).
"""

import jax
import ml_collections

from jaxkd import losses, methods
from jaxkd.methods import logit_method, lskd
from jaxkd.ranges import NON_NEGATIVE, POSITIVE, Range

STD_EPS = 1e-7


@methods.register("generous")
class GenerousTeacher(logit_method.LogitMethod):
  @classmethod
  def traced_settings(cls) -> tuple[str, ...]:
    return ("std_multiple", "nckd_weight", "tckd_weight", "ce_weight")

  @classmethod
  def default_config(cls) -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict({
        "std_multiple": 2.0,  # k: T_i = k · std(z_i) (LS-KD's base τ; the paper's k unknown).
        "nckd_weight": 1.0,  # λ (unknown; DKD's β range 1-8 is the suggested sweep).
        "ce_weight": 1.0,
        "tckd_weight": 0.0,  # > 0 adds TCKD; 0: "only non-target knowledge" (abstract).
        "std_source": "own",  # 'own': each model its std (LS-KD); 'teacher': S's for both.
        "std_classes": "all",  # 'all' C logits (ddof = 1) | 'non_target' (the C − 1 others).
        "init_from_teacher": False,  # True: G starts from S's weights instead of from scratch.
    })

  @classmethod
  def ranges(cls) -> dict[str, Range]:
    return {"std_multiple": POSITIVE,  # Temperatures are k · std.
            "nckd_weight": NON_NEGATIVE, "ce_weight": NON_NEGATIVE,
            "tckd_weight": NON_NEGATIVE}

  def validate(self) -> None:
    super().validate()
    hp = self.hparams
    if hp.std_source not in ("own", "teacher"):
      raise ValueError(f"config.generous.std_source must be 'own' or 'teacher', "
                       f"got '{hp.std_source}'")
    if hp.init_from_teacher and self.run_info.student_checkpoint:
      raise ValueError("config.generous.init_from_teacher starts G from the standard teacher: "
                       "leave config.student_checkpoint empty or set init_from_teacher=False")
    if hp.std_classes not in ("all", "non_target"):
      raise ValueError(f"config.generous.std_classes must be 'all' or 'non_target', "
                       f"got '{hp.std_classes}'")

  def student_checkpoint(self) -> str:
    """S's checkpoint when G starts from S (`init_from_teacher`), else the run's setting."""
    if self.hparams.init_from_teacher:
      return ",".join(self.run_info.teacher_checkpoints)  # One teacher (`validate`).
    return super().student_checkpoint()

  def temperature(self, logits, labels):
    """T_i = k · (std(z_i) + ε), the std over the classes `std_classes` names."""
    where = None
    if self.hparams.std_classes == "non_target":
      where = ~jax.nn.one_hot(labels, logits.shape[-1], dtype=bool)
    return self.hparams.std_multiple * (lskd.logit_std(logits, where=where) + STD_EPS)

  def logit_loss(self, teacher_logits, student_logits, labels, step_info, extra):
    """(total, metrics): the standard teacher S's logits, the generous teacher G's."""
    del step_info, extra
    hp = self.hparams
    k = hp.std_multiple
    teacher_temperature = self.temperature(teacher_logits, labels)
    temperature = (teacher_temperature if hp.std_source == "teacher" else
                   self.temperature(student_logits, labels))
    tckd, nckd = losses.decoupled_kl(teacher_logits, student_logits, labels, temperature,
                                     teacher_temperature=teacher_temperature, t2_factor=k**2)
    ce = losses.batch_mean(losses.cross_entropy(student_logits, labels))
    tckd, nckd = losses.batch_mean(tckd), losses.batch_mean(nckd)
    total = hp.ce_weight * ce + hp.nckd_weight * nckd + hp.tckd_weight * tckd
    return total, {"loss/ce": ce, "loss/nckd": nckd, "loss/tckd": tckd,
                   "generous/temperature_mean": temperature.mean(),
                   "generous/teacher_temperature_mean": teacher_temperature.mean()}
