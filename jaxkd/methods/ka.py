"""Knowledge Adjustment ("Preparing Lessons", Wen, Lai & Qian), methods.md §8.

KD whose teacher is corrected on the samples it gets wrong (argmax z_t ≠ y):

    PS:  z_t[argmax] ↔ z_t[y]          (probability shift, the default)
    LSR: p_t = ρ·onehot(y) + (1 − ρ)/(C − 1)·(1 − onehot(y))       (ρ = 0.9)
    L = w_ce · CE(z_s, y) + w_kd · T² · mean_i KL(p_t,i ‖ σ(z_s,i / T))

KD's settings (T = 4, w_ce = 0.1, w_kd = 0.9) with `transforms='ka'`; logs the fraction
of adjusted samples as `ka/adjusted_fraction`. Add 'dtd' after it for KA ▶ DTD.
"""

from jaxkd.methods.kd import KnowledgeDistillation


class KnowledgeAdjustment(KnowledgeDistillation):
  name = "ka"
  default_transforms = "ka"
