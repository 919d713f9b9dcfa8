"""Whole train steps of KD, DKD, SimKD and ATSC in PyTorch, from docs/methods.md §2, §3, §5, §6.

The PyTorch side of the step parity check (`benchmarks.parity`), written from the equations
of docs/methods.md, not from jaxkd's code. One step on a batch (x, y), with z the logits and
f the distillation feature map (`forward_features` of `benchmarks.torch_models`):

    kd:    L = w_ce · CE(z_s, y) + w_kd · T² · mean_i KL(σ(z_t,i / T) ‖ σ(z_s,i / T))
    dkd:   L = w_ce · CE(z_s, y) + min(epoch / warmup, 1) · (α · TCKD + β · NCKD)
    simkd: h = P(align(f_s)),
           L = b · MSE(h, align(f_t)) + c · CE(z_s, y) + d · T² · KL(σ(z_t / T) ‖ σ(z_s / T))
    atsc:  L_main = simkd's L + w · Σ_{W ∈ Ω} ‖W − W⁰‖²_F, the teacher trained too, then
           L_head = CE(z'_t, y) of the updated teacher, over its classifier bias b_T
           ('bias') or W_T and b_T ('weight_and_bias')

align pools the larger of the two maps to the smaller spatial size (adaptive average
pooling); P is SimKD's projector (`Projector`); Ω holds the teacher's parameters with
ndim ≥ 2, W⁰ their values when the step is built; MSE is the mean over all elements.

Modes: kd, dkd and simkd run the teacher in eval mode under `no_grad`; ATSC runs it in train
mode for both of its forwards (its running statistics move twice per step). Student and
projector always train.

Optimisers: `torch.optim.SGD(lr, momentum, weight_decay)`: dampening 0, no Nesterov, the
weight decay coupled (added to the gradient before momentum), the momentum buffer starting
as the first gradient. The main optimiser steps the student, the projector and (ATSC) the
teacher; ATSC's head optimiser, with the same settings, has a momentum buffer of its own.
Every loss term is computed even at weight 0, so every parameter the loss reaches has a
gradient (possibly 0) and decays: PyTorch's SGD skips only parameters without a gradient.

BN running variance: PyTorch stores the unbiased batch variance, Flax (and so jaxkd) the
biased one; `with_biased_running_variance` makes a model store the biased one, so that the
parity can compare running statistics exactly (docs/methods.md §10).
"""

import dataclasses
from typing import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from benchmarks.torch_reference import dkd_terms, kd_loss

PARITY_METHODS = ("kd", "dkd", "simkd", "atsc")
HEAD_PARAMS = ("bias", "weight_and_bias")


class BiasedVarianceBatchNorm2d(nn.BatchNorm2d):
  """BatchNorm2d whose running variance averages the biased batch variance (Flax's choice):

      running_var ← (1 − m) · running_var + m · mean((x − x̄)²)   (PyTorch: · n / (n − 1))
  """

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    if not self.training:
      return super().forward(x)
    with torch.no_grad():
      mean = x.mean(dim=(0, 2, 3))
      variance = x.var(dim=(0, 2, 3), unbiased=False)
      self.running_mean.mul_(1 - self.momentum).add_(self.momentum * mean)
      self.running_var.mul_(1 - self.momentum).add_(self.momentum * variance)
      self.num_batches_tracked.add_(1)
    return F.batch_norm(x, None, None, self.weight, self.bias, True, 0.0, self.eps)


def with_biased_running_variance(model: nn.Module) -> nn.Module:
  """`model` with every BatchNorm2d storing the biased running variance (in place)."""
  for module in model.modules():
    if type(module) is nn.BatchNorm2d:  # pylint: disable=unidiomatic-typecheck
      module.__class__ = BiasedVarianceBatchNorm2d  # Same state, another forward.
  return model


class Projector(nn.Module):
  """SimKD's projector P (docs/methods.md §5): C_s → C_t/f → C_t/f → C_t as 1×1 conv-BN-ReLU,
  3×3 conv-BN-ReLU, 1×1 conv-BN-ReLU, convolutions without bias. The module names are
  jaxkd's (`conv0`, `bn0`, ...), so that `jaxkd.torch_layout.JAXKD_NAMES` maps its weights."""

  def __init__(self, in_channels: int, out_channels: int, factor: int):
    super().__init__()
    hidden = out_channels // factor
    for index, (c_in, c_out, kernel) in enumerate(
        ((in_channels, hidden, 1), (hidden, hidden, 3), (hidden, out_channels, 1))):
      self.add_module(f"conv{index}", nn.Conv2d(c_in, c_out, kernel, padding=kernel // 2,
                                                bias=False))
      self.add_module(f"bn{index}", nn.BatchNorm2d(c_out))

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    for index in range(3):
      x = F.relu(self._modules[f"bn{index}"](self._modules[f"conv{index}"](x)))
    return x


def aligned(student_map: torch.Tensor, teacher_map: torch.Tensor
            ) -> tuple[torch.Tensor, torch.Tensor]:
  """Both maps at the smaller spatial size: the larger one adaptive-average-pooled to it."""
  size = tuple(min(s, t) for s, t in zip(student_map.shape[2:], teacher_map.shape[2:]))
  return F.adaptive_avg_pool2d(student_map, size), F.adaptive_avg_pool2d(teacher_map, size)


def classifier_of(model: nn.Module) -> nn.Linear:
  """The model's classifier: its last Linear layer."""
  return [module for module in model.modules() if isinstance(module, nn.Linear)][-1]


@dataclasses.dataclass(frozen=True)
class SGDSettings:
  """`torch.optim.SGD`'s settings, the CIFAR recipe's by default (docs/methods.md §10)."""
  learning_rate: float = 0.05
  momentum: float = 0.9
  weight_decay: float = 5e-4

  def optimizer(self, parameters) -> torch.optim.SGD:
    return torch.optim.SGD(parameters, lr=self.learning_rate, momentum=self.momentum,
                           weight_decay=self.weight_decay, dampening=0.0, nesterov=False)


class TorchDistillStep:
  """One method's whole train step on given batches: `step(images, labels, epoch)` updates
  the models in place and returns the loss terms, named as jaxkd's metrics."""

  def __init__(self, method: str, hparams: Mapping, student: nn.Module, teacher: nn.Module,
               projector: Projector | None = None, sgd: SGDSettings = SGDSettings()):
    if method not in PARITY_METHODS:
      raise ValueError(f"no PyTorch train step for method '{method}'; "
                       f"valid: {', '.join(PARITY_METHODS)}")
    if (projector is None) != (method in ("kd", "dkd")):
      raise ValueError(f"method '{method}' takes a projector exactly when it is simkd or atsc")
    self.method, self.hparams = method, dict(hparams)
    self.student, self.teacher, self.projector = student, teacher, projector
    self.trains_teacher = method == "atsc"
    teacher.requires_grad_(self.trains_teacher)
    trained = [*student.parameters(), *(projector.parameters() if projector else ())]
    if self.trains_teacher:
      trained += list(teacher.parameters())
      self.anchor = {name: p.detach().clone() for name, p in teacher.named_parameters()
                     if p.ndim >= 2}
      head = classifier_of(teacher)
      self.head = ([head.bias] if self.hparams["teacher_head_params"] == "bias"
                   else [head.weight, head.bias])
      self.head_optimizer = sgd.optimizer(self.head)
    self.optimizer = sgd.optimizer(trained)

  def step(self, images: torch.Tensor, labels: torch.Tensor, epoch: int) -> dict[str, float]:
    """One update (two for ATSC) on (images, labels) in epoch `epoch` (1-based)."""
    self.student.train()
    self.teacher.train(self.trains_teacher)
    if self.projector is not None:
      self.projector.train()
    terms = self._loss_terms(images, labels, epoch)
    self.optimizer.zero_grad(set_to_none=True)
    terms["loss"].backward()
    self.optimizer.step()
    if self.trains_teacher:
      terms["teacher/head_ce"] = self._head_update(images, labels)
    return {name: float(value.detach()) for name, value in terms.items()}

  def _teacher_outputs(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if self.trains_teacher:
      return self.teacher.forward_features(images)
    with torch.no_grad():
      return self.teacher.forward_features(images)

  def _loss_terms(self, images, labels, epoch) -> dict[str, torch.Tensor]:
    hp = self.hparams
    teacher_map, teacher_logits = self._teacher_outputs(images)
    student_map, student_logits = self.student.forward_features(images)
    ce = F.cross_entropy(student_logits, labels)
    if self.method == "kd":
      kd = kd_loss(student_logits, teacher_logits, hp["temperature"])
      return {"loss": hp["ce_weight"] * ce + hp["kd_weight"] * kd, "loss/ce": ce, "loss/kd": kd}
    if self.method == "dkd":
      tckd, nckd = dkd_terms(student_logits, teacher_logits, labels, hp["temperature"])
      warmup = min(epoch / hp["warmup_epochs"], 1.0)
      loss = hp["ce_weight"] * ce + warmup * (hp["alpha"] * tckd + hp["beta"] * nckd)
      return {"loss": loss, "loss/ce": ce, "loss/tckd": tckd, "loss/nckd": nckd}
    source, target = aligned(student_map, teacher_map)
    feature = F.mse_loss(self.projector(source), target)
    kd = kd_loss(student_logits, teacher_logits, hp["temperature"])
    loss = hp["feature_weight"] * feature + hp["ce_weight"] * ce + hp["kd_weight"] * kd
    terms = {"loss/feature": feature, "loss/ce": ce, "loss/kd": kd}
    if self.trains_teacher:
      anchor = sum(((p - self.anchor[name]) ** 2).sum()
                   for name, p in self.teacher.named_parameters() if name in self.anchor)
      loss = loss + hp["anchor_weight"] * anchor
      terms["loss/anchor"] = anchor
    return {"loss": loss, **terms}

  def _head_update(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """One step of the head optimiser on CE(updated teacher(x), y), teacher in train mode."""
    head_ce = F.cross_entropy(self.teacher(images), labels)
    for parameter, gradient in zip(self.head, torch.autograd.grad(head_ce, self.head)):
      parameter.grad = gradient
    self.head_optimizer.step()
    return head_ce.detach()
