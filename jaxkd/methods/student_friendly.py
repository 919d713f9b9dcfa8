"""Student-friendly KD, SKD (Yuan, Lang & Quan, 2023), docs/methods.md §7 — a reconstruction.

Softening, then a learning simplifier S_ψ (self-attention) that rewrites the teacher's
knowledge and is trained with the student on the distillation loss itself:

    u = z_t / T                                      (teacher frozen, stop-gradient)
    ũ = u + Attention_ψ(u)        (residual; Attention_ψ(u) alone with residual=False)
    p̂_t = softmax(ũ)             (softmax(ũ / T) with apply_temperature_again=True)
    L = w_ce · CE(z_s, y) + w_kd · T² · mean_i KL(p̂_t,i ‖ σ(z_s,i / T))
        + w_simplifier_ce · CE(ũ, y)                 (a guard against collapse)

Gradients reach the student and ψ; ψ (the method's `extra` module) trains with the
student optimizer. Only the abstract is verified; the open choices are settings:
- `attention_axis`: 'batch' (default, [memory]: the B samples are the tokens and each
  token is its C-dim softened logit vector; the attention spans the global batch under
  sharding) or 'class' (the C logits of a sample are tokens, each embedded to `dim`);
- `num_heads` (1), `dim` (0: C for the batch axis, 32 for the class axis), `residual` (True).
Collapse guards (jaxkd's, not the paper's): ψ minimises the same KL as the student, so it
can drift towards what the student already predicts. With the residual, the attention's
output projection starts at zero (S_ψ starts as the identity, p̂_t as σ(z_t/T)), and a CE
term on ũ keeps the simplified knowledge right about the label. Defaults w_ce = w_kd = 1
(the KD baseline of the SimKD/ATSC code) and w_simplifier_ce = 1: on digits, a cnn_small
student reached 33% with KD's 0.1/0.9 and no guard, 92% with these (3 epochs; the run of
`tests/methods/test_student_friendly.py`). `skd/kl_to_teacher` (KL(p̂_t ‖ σ(z_t/T))) and the
simplifier's accuracy are logged so that a collapse is visible.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from jaxkd import losses, methods
from jaxkd.methods import base, logit_method
from jaxkd.ranges import AT_LEAST_ONE, NON_NEGATIVE, POSITIVE, Range


class LearningSimplifier(nn.Module):
  """Self-attention over the softened teacher logits u (B, C) → simplified logits (B, C)."""
  num_classes: int
  attention_axis: str = "batch"
  num_heads: int = 1
  dim: int = 0
  residual: bool = True

  @nn.compact
  def __call__(self, u: jax.Array) -> jax.Array:
    out_init = nn.initializers.zeros if self.residual else nn.initializers.lecun_normal()
    if self.attention_axis == "batch":
      dim = self.dim or self.num_classes
      attended = nn.MultiHeadDotProductAttention(
          num_heads=self.num_heads, qkv_features=dim, out_features=self.num_classes,
          out_kernel_init=out_init, name="attention")(u[None])[0]
    else:
      dim = self.dim or 32
      tokens = nn.Dense(dim, name="embed")(u[..., None])
      attended = nn.MultiHeadDotProductAttention(
          num_heads=self.num_heads, qkv_features=dim, out_features=dim, name="attention")(tokens)
      attended = nn.Dense(1, kernel_init=out_init, name="unembed")(attended)[..., 0]
    return u + attended if self.residual else attended


@methods.register("student_friendly")
class StudentFriendlyKD(logit_method.LogitMethod):
  @classmethod
  def traced_settings(cls) -> tuple[str, ...]:
    return ("temperature", "ce_weight", "kd_weight", "simplifier_ce_weight")

  @classmethod
  def default_config(cls) -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict({
        "temperature": 4.0,  # T of the softening and of the student's softmax.
        "ce_weight": 1.0,  # w_ce, w_kd: the SimKD/ATSC codebase's KD baseline (1, 1).
        "kd_weight": 1.0,
        "attention_axis": "batch",  # 'batch' (samples are tokens) | 'class' (logits are).
        "num_heads": 1,  # Single-head attention, as §7 proposes.
        "dim": 0,  # Query/key width d; 0: C on the batch axis, 32 on the class axis.
        "residual": True,  # ũ = u + Attention(u), the output projection zero-initialised.
        "apply_temperature_again": False,  # p̂ = softmax(ũ / T) instead of softmax(ũ).
        "simplifier_ce_weight": 1.0,  # CE(ũ, y): jaxkd's guard against collapse (0: off).
    })

  @classmethod
  def ranges(cls) -> dict[str, Range]:
    return {"temperature": POSITIVE, "ce_weight": NON_NEGATIVE,
            "kd_weight": NON_NEGATIVE, "num_heads": AT_LEAST_ONE,
            "dim": NON_NEGATIVE,  # 0: C on the batch axis, 32 on the class axis.
            "simplifier_ce_weight": NON_NEGATIVE}

  def validate(self) -> None:
    super().validate()
    hp = self.hparams
    if hp.attention_axis not in ("batch", "class"):
      raise ValueError("config.student_friendly.attention_axis must be 'batch' or 'class', "
                       f"got '{hp.attention_axis}'")
    if hp.dim and hp.dim % hp.num_heads:
      raise ValueError("config.student_friendly.dim must be a multiple of num_heads "
                       f"(dim={hp.dim}, num_heads={hp.num_heads})")

  def init_extra(self, rng, nets, shapes):
    hp = self.hparams
    num_classes = shapes.teachers[0][1].shape[-1]
    if hp.attention_axis == "batch" and not hp.dim and num_classes % hp.num_heads:
      raise ValueError(f"config.student_friendly.num_heads={hp.num_heads} must divide the "
                       f"{num_classes} classes (dim=0 means dim=C), or set dim")
    module = LearningSimplifier(num_classes, hp.attention_axis, hp.num_heads, hp.dim, hp.residual)
    params = jax.jit(module.init)(rng, jnp.zeros((2, num_classes), jnp.float32))["params"]
    return module, params, {}

  def logit_loss(self, teacher_logits, student_logits, labels, step_info, extra):
    """(total, metrics); `extra` is the simplifier S_ψ with the ψ being trained."""
    del step_info
    hp = self.hparams
    temperature = hp.temperature
    softened = jax.lax.stop_gradient(teacher_logits) / temperature
    simplified = extra(softened)
    target_logits = simplified / temperature if hp.apply_temperature_again else simplified
    target_log_probs = jax.nn.log_softmax(target_logits, axis=-1)
    ce = losses.batch_mean(losses.cross_entropy(student_logits, labels))
    kd = losses.batch_mean(losses.kl_to_target(target_log_probs, student_logits, temperature,
                                               t2_factor=temperature**2))
    simplifier_ce = losses.batch_mean(losses.cross_entropy(simplified, labels))
    total = hp.ce_weight * ce + hp.kd_weight * kd + hp.simplifier_ce_weight * simplifier_ce
    kl_to_teacher = losses.batch_mean(losses.kl_to_target(
        jax.lax.stop_gradient(target_log_probs), softened, 1.0, t2_factor=1.0))
    return total, {"loss/ce": ce, "loss/kd": kd, "loss/simplifier_ce": simplifier_ce,
                   "skd/kl_to_teacher": kl_to_teacher,
                   "skd/simplifier_accuracy": base.accuracy(simplified, labels)}
