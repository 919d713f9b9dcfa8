"""ATSC: adaptive teaching with a shared classifier (Jang et al., arXiv 2406.08528), docs/methods.md §6.

SimKD (`jaxkd.methods.simkd`) with a trainable teacher, on the same features (the models'
distillation features, the code's `feat[-2]`) and refusing the same teachers (a head conv
between feature and classifier). Each step, inside one compiled step:

1. Main update, every module in train mode (teacher BN on batch statistics, its running
   statistics updated), gradients reaching student, projector and teacher:

       L_main = b · Σ_i MSE(h_i, align(f_t,i)) + w · Σ_i Σ_{W ∈ Ω_i} ‖W − W⁰‖²_F
                + c · CE(z_s, y) + d · mean_i T² · KL(σ(z_t,i/T) ‖ σ(z_s/T))

   Ω_i: teacher i's parameters with ndim ≥ 2 (conv kernels and the classifier kernel W_T;
   not BN γ/β nor biases), anchored at their values W⁰ when distillation starts. z_s are
   the student's own logits and the KL term is not detached from the teacher (as in the
   reference code; c = d = 0 by default). Student and projectors step with
   `config.optimizer`, teachers with `config.teacher_optimizer` (weight decay on all).
2. Head update: the updated teacher runs again in train mode (running statistics move a
   second time) and its classifier takes one step of its own optimizer on

       L_head = Σ_i CE(z'_t,i, y)

   over the bias b_T ('bias', the reference code) or W_T and b_T ('weight_and_bias'). That
   optimizer is the run's teacher optimizer (`base.Optimizers.teacher`, handed in by the
   trainer) with a state of its own (momentum buffer), kept in `state.method_state` with
   the anchor θ⁰.

Prediction: ŷ = combination_i(W_T,i · GAP(h_i) + b_T,i) with the *adapted* heads
('mean_logits' or 'mean_probs'); the released code evaluates the student's own head
instead, which never trains. Several teachers (comma-separated `teacher_model`) each get
a projector, a feature loss, an anchor and a head update (a reconstruction: the released
code has one teacher).
"""

from typing import Any, Sequence

import jax
import ml_collections
import optax

from jaxkd import losses, methods
from jaxkd.methods import base, projector, simkd
from jaxkd.ranges import NON_NEGATIVE, Range, check_choice

PyTree = Any
HEAD_PARAMS = {"bias": ("bias",), "weight_and_bias": ("kernel", "bias")}


def share_student_optimizer(run: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """Links every field of `run.teacher_optimizer` to `run.optimizer` (one optimizer in the code).

  Setting either one (e.g. `--config.optimizer.learning_rate=0.01`) sets both, and the CIFAR
  recipe's rate that follows `student_model` (`recipes.cifar_run`) reaches both; to give the
  teacher settings of its own, assign a new `teacher_optimizer` section instead.
  """
  run.teacher_optimizer = ml_collections.ConfigDict()
  for field in run.optimizer:
    run.teacher_optimizer[field] = run.optimizer.get_ref(field)
  return run


@methods.register("atsc")
class ATSC(simkd.SimKD):
  """SimKD whose teachers adapt to the student, anchored to their pretrained weights."""

  teacher_mode = base.TeacherMode.TRAINABLE
  multi_teacher = True
  @classmethod
  def traced_settings(cls) -> tuple[str, ...]:
    return (*super().traced_settings(), "anchor_weight")

  @classmethod
  def default_config(cls) -> ml_collections.ConfigDict:
    config = super().default_config()
    config.anchor_weight = 1.0  # w: 1 on CIFAR, 10 on ImageNet.
    config.teacher_head_params = "bias"  # 'bias' (the code) | 'weight_and_bias'.
    config.combine = "mean_logits"  # Several teachers: 'mean_logits' | 'mean_probs'.
    return config

  @classmethod
  def ranges(cls) -> dict[str, Range]:
    return {**super().ranges(), "anchor_weight": NON_NEGATIVE}

  def validate(self) -> None:
    super().validate()
    hp = self.hparams
    check_choice("config.atsc.teacher_head_params", hp.teacher_head_params, HEAD_PARAMS)
    check_choice("config.atsc.combine", hp.combine, projector.COMBINATIONS)

  def combination(self) -> str:
    return self.hparams.combine

  def heads(self, teacher_params: Sequence[PyTree]) -> tuple[dict[str, jax.Array], ...]:
    """The classifier parameters the head update trains, per teacher."""
    names = HEAD_PARAMS[self.hparams.teacher_head_params]
    return tuple({n: t["classifier"][n] for n in names} for t in teacher_params)

  def with_heads(self, teacher_params: Sequence[PyTree],
                 heads: Sequence[dict[str, jax.Array]]) -> tuple[PyTree, ...]:
    """`teacher_params` with their classifier entries replaced by `heads`."""
    return tuple(dict(t, classifier=dict(t["classifier"], **h))
                 for t, h in zip(teacher_params, heads))

  def init_state(self, params, batch_stats, optimizers):
    """The anchor θ⁰ (a copy of the teachers' parameters) and the head optimizer's state."""
    del batch_stats
    teachers = params["teachers"]
    return {"anchor": jax.tree.map(lambda x: x.copy(), teachers),
            "head_opt_state": optimizers.teacher.init(self.heads(teachers))}

  def loss(self, nets, params, batch_stats, batch, rng, step_info):
    del rng
    hp = self.hparams
    labels = batch["label"]
    teacher_outputs, teacher_stats = [], []
    for module, t_params, t_stats in zip(nets.teachers, params["teachers"],
                                         batch_stats["teachers"]):
      outputs, new_stats = base.apply_model(module, t_params, t_stats, batch["image"], train=True)
      teacher_outputs.append(outputs)
      teacher_stats.append(new_stats)
    total, new_stats, metrics = self.distillation_terms(
        nets, params, batch_stats, batch, teacher_outputs)
    anchor = sum(losses.squared_distance_to_anchor(t, t0, losses.anchor_mask(t))
                 for t, t0 in zip(params["teachers"], step_info.method_state["anchor"]))
    total = total + hp.anchor_weight * anchor
    teacher_ce = sum(losses.batch_mean(losses.cross_entropy(z, labels))
                     for _, z in teacher_outputs) / len(teacher_outputs)
    metrics = dict(metrics, **{"loss/anchor": anchor, "teacher/train_ce": teacher_ce})
    return total, (dict(batch_stats, teachers=tuple(teacher_stats), **new_stats), metrics)

  def post_update(self, nets, state, batch, rng, step_info, optimizers):
    """One step of the teacher optimizer on Σ_i CE(teacher_i(x), y) over the heads, with
    the head's own optimizer state, teachers in train mode."""
    del rng, step_info
    images, labels = batch["image"], batch["label"]
    teachers = state.params["teachers"]

    def head_loss(heads):
      ces, stats, accuracies = [], [], []
      for module, t_params, t_stats in zip(nets.teachers, self.with_heads(teachers, heads),
                                           state.batch_stats["teachers"]):
        (_, logits), new_stats = base.apply_model(module, t_params, t_stats, images, train=True)
        ces.append(losses.batch_mean(losses.cross_entropy(logits, labels)))
        stats.append(new_stats)
        accuracies.append(base.accuracy(logits, labels))
      return sum(ces), (tuple(stats), accuracies)

    heads = self.heads(teachers)
    (head_ce, (teacher_stats, accuracies)), grads = jax.value_and_grad(
        head_loss, has_aux=True)(heads)
    updates, head_opt_state = optimizers.teacher.update(
        grads, state.method_state["head_opt_state"], heads)
    params = dict(state.params, teachers=self.with_heads(teachers,
                                                         optax.apply_updates(heads, updates)))
    new_state = state.replace(
        params=params, batch_stats=dict(state.batch_stats, teachers=teacher_stats),
        method_state=dict(state.method_state, head_opt_state=head_opt_state))
    metrics = {"teacher/head_ce": head_ce / len(heads),
               "teacher/head_train_accuracy": sum(accuracies) / len(accuracies)}
    return new_state, metrics
