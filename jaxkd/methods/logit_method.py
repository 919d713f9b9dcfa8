"""The body shared by the methods that compare logits only (docs/methods.md §11).

KD, KA, DTD, LS-KD, DKD, SKD and Generous Teacher differ only in what they compute from
one frozen teacher's logits, the student's logits and the labels. `LogitMethod.loss` runs
the rest once: the teacher forward (eval mode, stop-gradient), the student forward (train
mode, its batch statistics updated), the method's `logit_loss`, and the accuracies
`train/accuracy` and `teacher/train_accuracy`. A logit method's file holds its math only:

    logit_loss(teacher_logits, student_logits, labels, step_info, extra) -> (loss, metrics)

Logits are float32 (every model's are, `jaxkd.models`). `extra` is the method's extra
module applied with the parameters being trained, `u ↦ module.apply({'params': ψ}, u)`
(SKD's simplifier), or None for a method without one (`init_extra` returns no module).
"""

import abc
import functools
from typing import Callable

import jax

from jaxkd.methods import base

Extra = Callable[[jax.Array], jax.Array] | None


class LogitMethod(base.Method):
  """A method with one frozen teacher whose loss reads logits and labels only."""

  teacher_mode = base.TeacherMode.FROZEN

  @abc.abstractmethod
  def logit_loss(self, teacher_logits: jax.Array, student_logits: jax.Array, labels: jax.Array,
                 step_info: base.StepInfo, extra: Extra) -> tuple[jax.Array, base.Metrics]:
    """(loss, metrics) of a batch's (B, C) logits and (B,) labels."""

  def loss(self, nets, params, batch_stats, batch, rng, step_info):
    del rng
    labels = batch["label"]
    ((_, teacher_logits),) = base.frozen_teacher_outputs(nets, params, batch_stats, batch["image"])
    (_, logits), student_stats = base.apply_model(
        nets.student, params["student"], batch_stats["student"], batch["image"], train=True)
    extra = None if nets.extra is None else functools.partial(
        nets.extra.apply, {"params": params["extra"]})
    total, metrics = self.logit_loss(teacher_logits, logits, labels, step_info, extra)
    metrics.update({"train/accuracy": base.accuracy(logits, labels),
                    "teacher/train_accuracy": base.accuracy(teacher_logits, labels)})
    return total, (dict(batch_stats, student=student_stats), metrics)
