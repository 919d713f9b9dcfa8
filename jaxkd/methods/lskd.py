"""Logit-standardised KD (Sun et al., CVPR 2024), methods.md §4.

    ẑ = (z − mean_c z) / (std_c z + 1e-7)        (per sample, std with ddof = 1)
    L = w_ce · CE(z_s, y) + w_kd · τ² · mean_i KL(σ(ẑ_t,i / τ) ‖ σ(ẑ_s,i / τ))

Defaults of the reference (`--logit-stand --base-temp 2 --kd-weight 9`): τ = 2,
w_kd = 9, w_ce = 0.1. The factor is the base τ², not the effective (τ·std)².
With DKD: `--config.method=dkd --config.dkd.transforms=ls` (see `jaxkd.methods.dkd`).
"""

import ml_collections

from jaxkd.methods.kd import KnowledgeDistillation


class LogitStandardizedKD(KnowledgeDistillation):
  name = "lskd"
  default_transforms = "ls"

  @classmethod
  def default_config(cls) -> ml_collections.ConfigDict:
    config = super().default_config()
    config.temperature, config.kd_weight, config.ce_weight = 2.0, 9.0, 0.1
    return config
