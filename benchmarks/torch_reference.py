"""The CE / KD / DKD train steps in PyTorch, the reference jaxkd's step is timed against.

Architectures are the CIFAR ResNets and WRNs of `benchmarks.torch_models` (RepDistiller's
`resnet.py` and `wrn.py`, NCHW as PyTorch lays them out), with the same parameter counts as
jaxkd's zoo entries of the same name.
One step is what RepDistiller's `train_distill` does per batch: the teacher in eval mode
under `no_grad`, the student forward in train mode, the method's loss, backward, and
`SGD(lr, momentum=0.9, weight_decay=5e-4)` (coupled weight decay on every parameter).

This module imports no jax: the benchmark harness passes it the method hyperparameters.
"""

import dataclasses
import time
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from benchmarks import torch_models
from benchmarks.torch_models import parameter_count  # pylint: disable=unused-import  (re-export)

TORCH_METHODS = ("ce", "kd", "dkd")
# Untimed steps before timing: oneDNN (CPU) and cuDNN (GPU) choose and build their kernels,
# and SGD creates its momentum buffers, during the first steps (measured: 2 slow steps).
WARMUP_STEPS = 3
# The masking offset of DKD's non-target softmax: exp(-1000) is 0 in float32 and bfloat16.
_NON_TARGET_OFFSET = 1000.0


MODEL_NAMES = tuple(sorted((*torch_models.CIFAR_RESNETS, *torch_models.WIDE_RESNETS)))


def create_model(name: str, num_classes: int) -> nn.Module:
  """The RepDistiller architecture `name` with `num_classes` outputs."""
  if name not in MODEL_NAMES:
    raise ValueError(f"no PyTorch reference for model '{name}'; valid: {', '.join(MODEL_NAMES)}")
  return torch_models.create_model(name, num_classes)


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor,
            temperature: float) -> torch.Tensor:
  """L_KD = T² · mean_i KL(σ(z_t,i / T) ‖ σ(z_s,i / T))."""
  log_student = F.log_softmax(student_logits / temperature, dim=1)
  log_teacher = F.log_softmax(teacher_logits / temperature, dim=1)
  kl = F.kl_div(log_student, log_teacher, log_target=True, reduction="batchmean")
  return kl * temperature**2


def _kl_from_log_probs(log_p: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
  """KL(p ‖ q) = Σ_c p_c (log p_c − log q_c) per row."""
  return (log_p.exp() * (log_p - log_q)).sum(dim=1)


def dkd_terms(student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor,
              temperature: float) -> tuple[torch.Tensor, torch.Tensor]:
  """DKD's batch-mean terms (Zhao et al. 2022).

      TCKD = T² · mean_i KL(b_t,i ‖ b_s,i),   b = [p_y, 1 − p_y],  p = σ(z / T)
      NCKD = T² · mean_i KL(p̃_t,i ‖ p̃_s,i),   p̃ = softmax over the classes c ≠ y

  log p_y and log(1 − p_y) are log-sum-exp differences, so no log of a probability is taken.
  """
  target = F.one_hot(labels, student_logits.shape[1]).bool()

  def binary_log_probs(logits):
    scaled = logits / temperature
    log_total = torch.logsumexp(scaled, dim=1)
    log_target = scaled.gather(1, labels[:, None])[:, 0] - log_total
    log_rest = torch.logsumexp(scaled.masked_fill(target, float("-inf")), dim=1) - log_total
    return torch.stack([log_target, log_rest], dim=1)

  def non_target_log_probs(logits):
    return F.log_softmax(logits / temperature - _NON_TARGET_OFFSET * target, dim=1)

  tckd = _kl_from_log_probs(binary_log_probs(teacher_logits), binary_log_probs(student_logits))
  nckd = _kl_from_log_probs(non_target_log_probs(teacher_logits),
                            non_target_log_probs(student_logits))
  return tckd.mean() * temperature**2, nckd.mean() * temperature**2


def method_loss(method: str, hparams: Mapping[str, Any], student_logits: torch.Tensor,
                teacher_logits: torch.Tensor | None, labels: torch.Tensor,
                epoch: int) -> torch.Tensor:
  """The training loss of `method` (jaxkd's equations, with its hyperparameter names).

      ce:  L = CE(z_s, y)
      kd:  L = w_ce · CE(z_s, y) + w_kd · L_KD
      dkd: L = w_ce · CE(z_s, y) + min(epoch / warmup, 1) · (α · TCKD + β · NCKD)
  """
  if method == "ce":
    return F.cross_entropy(student_logits, labels,
                           label_smoothing=hparams.get("label_smoothing", 0.0))
  ce = F.cross_entropy(student_logits, labels)
  if method == "kd":
    kd = kd_loss(student_logits, teacher_logits, hparams["temperature"])
    return hparams["ce_weight"] * ce + hparams["kd_weight"] * kd
  if method == "dkd":
    tckd, nckd = dkd_terms(student_logits, teacher_logits, labels, hparams["temperature"])
    warmup = min(epoch / hparams["warmup_epochs"], 1.0)
    return hparams["ce_weight"] * ce + warmup * (hparams["alpha"] * tckd + hparams["beta"] * nckd)
  raise ValueError(f"no PyTorch reference for method '{method}'; "
                   f"valid: {', '.join(TORCH_METHODS)}")


@dataclasses.dataclass(frozen=True)
class TorchOptions:
  """How the reference runs: device ('cpu' / 'cuda'), NHWC memory, bf16 autocast, CPU threads."""
  device: str = "cpu"
  channels_last: bool = False
  bf16: bool = False
  threads: int | None = None


class TorchTrainStep:
  """One method's train step on a fixed synthetic batch; `run(steps)` times `steps` of them."""

  def __init__(self, method: str, hparams: Mapping[str, Any], student: str, teacher: str | None,
               num_classes: int, batch_size: int, image_shape: tuple[int, int, int],
               options: TorchOptions, *, learning_rate: float = 0.05, momentum: float = 0.9,
               weight_decay: float = 5e-4, seed: int = 0):
    if options.threads:
      torch.set_num_threads(options.threads)
    torch.manual_seed(seed)
    self.method, self.hparams, self.options = method, dict(hparams), options
    self.device = torch.device(options.device)
    if self.device.type == "cuda":
      torch.backends.cudnn.benchmark = True  # Autotuned kernels, as fast PyTorch code runs.
    self.memory_format = torch.channels_last if options.channels_last else torch.contiguous_format
    self.student = self._place(create_model(student, num_classes)).train()
    self.teacher = None
    if method != "ce":
      self.teacher = self._place(create_model(teacher, num_classes)).eval()
      self.teacher.requires_grad_(False)
    self.optimizer = torch.optim.SGD(self.student.parameters(), lr=learning_rate,
                                     momentum=momentum, weight_decay=weight_decay)
    height, width, channels = image_shape
    self.images = torch.randn(batch_size, channels, height, width).to(
        self.device, memory_format=self.memory_format)
    self.labels = torch.randint(0, num_classes, (batch_size,), device=self.device)

  def _place(self, model: nn.Module) -> nn.Module:
    return model.to(self.device, memory_format=self.memory_format)

  def _autocast(self):
    return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16,
                          enabled=self.options.bf16)

  def step(self) -> torch.Tensor:
    """One update of the student; returns the loss (not synchronised)."""
    with self._autocast():
      teacher_logits = None
      if self.teacher is not None:
        with torch.no_grad():
          teacher_logits = self.teacher(self.images)
      logits = self.student(self.images)
      loss = method_loss(self.method, self.hparams, logits.float(),
                         None if teacher_logits is None else teacher_logits.float(),
                         self.labels, epoch=1)
    self.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    self.optimizer.step()
    return loss

  def synchronize(self) -> None:
    if self.device.type == "cuda":
      torch.cuda.synchronize(self.device)

  def run(self, steps: int) -> float:
    """Seconds for `steps` steps, the device idle at the end."""
    self.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
      self.step()
    self.synchronize()
    return time.perf_counter() - start
