"""Dynamic Temperature Distillation ("Preparing Lessons"), methods.md §8.

KD with one temperature per sample, lower for the samples the student finds confusing:

    τ_i = max(τ₀ + β · (mean_j w_j − w_i), τ_min)
    w_i = (1 − cos(z_s,i, z_t,i))^γ   (FLSW)   or   1 / (max_c σ(z_s,i)_c + 1e-3)   (CWSM)
    L = w_ce · CE(z_s, y) + w_kd · mean_i τ_i² · KL(σ(z_t,i / τ_i) ‖ σ(z_s,i / τ_i))

KD's settings with `transforms='dtd'`: τ₀ = 4, β = 1, γ = 2 (TextBrewer's example; the
paper's tuned values were not retrieved), τ_min = 1, weights under stop-gradient, the
mean over the global batch. The τ_i² factor is on (`dtd_t2`) so that each sample's
gradient has KD's scale (the KL's gradient shrinks as 1/τ²); TextBrewer has no factor
(`dtd_t2=False`). `dtd_sample_weight=True` also weights sample i by w_i / mean w (off:
unverified). Logs `dtd/temperature_mean|min|max`.
"""

from jaxkd.methods.kd import KnowledgeDistillation


class DynamicTemperature(KnowledgeDistillation):
  name = "dtd"
  default_transforms = "dtd"
