"""SimKD: the student reuses the teacher's classifier (Chen et al., CVPR 2022), docs/methods.md §5.

With the student's distillation feature f_s, the teacher's f_t (each model's `feature`,
the reference code's `feat[-2]`: for a MobileNetV2 student the last inverted-residual block's
output, for ShuffleV2 the last stage's, before their head convs; see `jaxkd.models`), the
projector P (the method's `extra` module, `projector.TeacherProjectors`) and h = P(align(f_s)):

    L = b · MSE(h, align(f_t)) + c · CE(z_s, y) + d · T² · KL(σ(z_t/T) ‖ σ(z_s/T))
    ŷ = W_t · GAP(h) + b_t                      (the teacher's frozen classifier)

MSE is the mean over all B·H·W·C elements; z_s are the student's *own* logits (as in the
reference code, where c = d = 0 by default, so its own classifier never trains). The
teacher is frozen (eval mode, stop-gradient); student and projector train with the
student optimizer. Evaluation and export use student + projector + teacher classifier, so
the teacher's classifier must read GAP(f_t): a teacher with a head conv after its feature
(MobileNetV2, ShuffleV2) is refused.
"""

from typing import Any, Mapping, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from jaxkd import losses, methods, models, precision
from jaxkd.methods import base, projector
from jaxkd.ranges import AT_LEAST_ONE, NON_NEGATIVE, POSITIVE, Range

PyTree = Any


def apply_projectors(module: nn.Module, params: PyTree, batch_stats: PyTree,
                     student_map: jax.Array, train: bool) -> tuple[tuple[jax.Array, ...], PyTree]:
  """Each teacher's projected student map h_i, and the projectors' (updated) batch stats."""
  variables = {"params": params, "batch_stats": batch_stats}
  if train:
    projected, updates = module.apply(variables, student_map, train=True, mutable=["batch_stats"])
    return projected, updates["batch_stats"]
  return module.apply(variables, student_map, train=False), batch_stats


def shared_head_predictions(teacher_params: Sequence[PyTree],
                            projected: Sequence[jax.Array]) -> tuple[jax.Array, ...]:
  """Teacher i's classifier on GAP(h_i), for every teacher."""
  return tuple(projector.shared_head_logits(t["classifier"], h)
               for t, h in zip(teacher_params, projected))


def feature_losses(projected: Sequence[jax.Array],
                   teacher_maps: Sequence[jax.Array]) -> tuple[jax.Array, ...]:
  """MSE(h_i, align(f_t,i)) per teacher, in full precision (the teacher map pooled to h_i's size)."""
  return tuple(losses.feature_mse(h.astype(precision.full_precision()),
                                  projector.pool_to_match(f, h).astype(precision.full_precision()))
               for h, f in zip(projected, teacher_maps))


@methods.register("simkd")
class SimKD(base.Method):
  """SimKD with one frozen teacher; ATSC (`jaxkd.methods.atsc`) extends it."""

  teacher_mode = base.TeacherMode.FROZEN
  @classmethod
  def traced_settings(cls) -> tuple[str, ...]:
    return ("feature_weight", "ce_weight", "kd_weight", "temperature")

  @classmethod
  def default_config(cls) -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict({
        "factor": 2,  # Projector width C_t / factor.
        "feature_weight": 1.0,  # b
        "ce_weight": 0.0,  # c, on the student's own logits.
        "kd_weight": 0.0,  # d, on the student's own logits.
        "temperature": 4.0,  # T of the KD term.
    })

  @classmethod
  def ranges(cls) -> dict[str, Range]:
    return {"factor": AT_LEAST_ONE, "feature_weight": NON_NEGATIVE,
            "ce_weight": NON_NEGATIVE, "kd_weight": NON_NEGATIVE,
            "temperature": POSITIVE}

  def validate(self) -> None:
    super().validate()
    for teacher in self.run_info.teacher_models:
      if not models.feature_feeds_classifier(teacher):
        raise ValueError(
            f"teacher '{teacher}' cannot share its classifier in {self.name}: its "
            "logits come from a head conv after its distillation feature, so the classifier "
            "cannot read the projected student feature; choose a teacher whose classifier "
            "pools its feature (a ResNet, WRN, VGG or ShuffleV1) in config.teacher_model")

  def combination(self) -> str:
    """How several teachers' shared-head logits become one prediction."""
    return "mean_logits"

  def init_extra(self, rng, nets, shapes):
    student_map = shapes.student[0]
    module = projector.TeacherProjectors(
        teacher_maps=tuple(tuple(feature_map.shape[1:]) for feature_map, _ in shapes.teachers),
        factor=self.hparams.factor, dtype=nets.student.dtype, conv_impl=nets.student.conv_impl)
    variables = jax.jit(module.init, static_argnames="train")(
        rng, jnp.zeros(student_map.shape, jnp.float32), train=False)
    return module, variables["params"], variables["batch_stats"]

  def distillation_terms(
      self, nets: base.Networks, params: Mapping[str, PyTree], batch_stats: Mapping[str, PyTree],
      batch: Mapping[str, jax.Array],
      teacher_outputs: Sequence[tuple[jax.Array, jax.Array]]
  ) -> tuple[jax.Array, dict[str, PyTree], base.Metrics]:
    """b·Σ_i MSE_i + c·CE + d·mean_i T²KL_i; returns (loss, new student/extra stats, metrics)."""
    hp = self.hparams
    labels = batch["label"]
    (student_map, logits), student_stats = base.apply_model(
        nets.student, params["student"], batch_stats["student"], batch["image"], train=True)
    projected, extra_stats = apply_projectors(
        nets.extra, params["extra"], batch_stats["extra"], student_map, train=True)
    feature = sum(feature_losses(projected, [f for f, _ in teacher_outputs]))
    ce = losses.batch_mean(losses.cross_entropy(logits, labels))
    kd = jnp.mean(jnp.stack([losses.batch_mean(losses.softened_kl(z, logits, hp.temperature))
                             for _, z in teacher_outputs]))
    total = hp.feature_weight * feature + hp.ce_weight * ce + hp.kd_weight * kd
    prediction = projector.combine_logits(
        shared_head_predictions(params["teachers"], projected), self.combination())
    metrics = {
        "loss/feature": feature, "loss/ce": ce, "loss/kd": kd,
        "train/accuracy": base.accuracy(prediction, labels),
        "train/own_head_accuracy": base.accuracy(logits, labels),
        "teacher/train_accuracy": jnp.mean(jnp.stack(
            [base.accuracy(z, labels) for _, z in teacher_outputs])),
    }
    return total, {"student": student_stats, "extra": extra_stats}, metrics

  def loss(self, nets, params, batch_stats, batch, rng, step_info):
    del rng, step_info
    teacher_outputs = base.frozen_teacher_outputs(nets, params, batch_stats, batch["image"])
    total, new_stats, metrics = self.distillation_terms(
        nets, params, batch_stats, batch, teacher_outputs)
    return total, (dict(batch_stats, **new_stats), metrics)

  def predict(self, nets, params, batch_stats, images):
    """The combined shared-head logits: teacher classifier(s) on GAP(P(f_s)), all in eval mode."""
    (student_map, _), _ = base.apply_model(
        nets.student, params["student"], batch_stats["student"], images, train=False)
    projected, _ = apply_projectors(nets.extra, params["extra"], batch_stats["extra"],
                                    student_map, train=False)
    return projector.combine_logits(shared_head_predictions(params["teachers"], projected),
                                    self.combination())

  def export_variables(self, state) -> PyTree:
    """The deployed model: student, projectors and the teachers' (current) classifiers."""
    return {
        "params": {"student": state.params["student"], "projectors": state.params["extra"],
                   "teacher_heads": tuple(t["classifier"] for t in state.params["teachers"])},
        "batch_stats": {"student": state.batch_stats["student"],
                        "projectors": state.batch_stats["extra"]},
    }
