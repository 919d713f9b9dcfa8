"""Step parity of jaxkd with PyTorch: KD, DKD, SimKD and ATSC trained side by side.

    python -m benchmarks.parity --method kd,dkd,simkd,atsc --teacher resnet20 --student resnet8 \\
        --batch 8 --steps 20 --dtype float64
    python -m benchmarks.parity --dtype float32 --steps 1

The JAX side is jaxkd's real train step: `jaxkd.run_builder.build_run` on a CIFAR-recipe
config (`jaxkd.recipes.cifar_run`, SGD momentum 0.9, coupled weight decay 5e-4, the method's
default settings), called directly on the batches (no input pipeline, no augmentation). The
PyTorch side is `benchmarks.torch_steps`, written from docs/methods.md. Both start from the
same weights: the teacher is a PyTorch model (randomly initialised with perturbed BN
statistics and affine parameters, so that eval-mode BN is not the identity, or a real
checkpoint with `--teacher-checkpoint`) that jaxkd imports from a .pth file as it imports any
teacher; the student and the projector are jaxkd's initialisation, exported into PyTorch
through `jaxkd.torch_layout`. Each step feeds both sides the same seeded normal images and
uniform labels and reports the loss terms of both, then the max relative difference
(max |jax − torch| / max |torch|, per tensor, the max over tensors) of the student's,
projector's and teacher's parameters and of their BN running statistics. The epoch counts
from 1 and advances every `--steps-per-epoch` steps (DKD's warm-up reads it).

Tolerances: float64 (`jax_enable_x64` on the JAX side, `.double()` on PyTorch) must agree to
1e-9 relative over the 20 steps; float32 to 1e-5 over the first step only: float32 round-off
(different summation orders of convolutions and reductions) grows chaotically through
training, so the multi-step check is done in float64, where any convention that differs
(docs/methods.md §10, "Conventions checked against PyTorch") shows far above round-off.
The command exits 1 when a difference exceeds the tolerance.

A loss term's difference is measured against the larger of the term and the total loss: a
term much smaller than the loss is ill-conditioned in float32 (DKD's TCKD, a KL of two nearly
equal binary distributions, about 1e-2 at the start: each side's float32 value is 1e-4 to 1e-3
of itself away from the float64 one, on the same logits), and it reaches the training only
through its absolute error in the loss.
"""

import argparse
import dataclasses
import os
import sys
import tempfile
from typing import Any, Sequence

import jax
import numpy as np
import torch

from benchmarks import torch_models, torch_steps
from jaxkd import data, precision, recipes, run_builder, torch_layout
from jaxkd import step as step_lib
from jaxkd.methods import atsc

DTYPES = {"float64": torch.float64, "float32": torch.float32}
TOLERANCES = {"float64": 1e-9, "float32": 1e-5}
RUNNING_VARIANCES = ("biased", "unbiased")
GROUPS = ("student", "projector", "teacher")
PyTree = Any


@dataclasses.dataclass(frozen=True)
class ParityCase:
  """One side-by-side run: `method` distilling `teacher` into `student`."""
  method: str
  teacher: str = "resnet20"
  student: str = "resnet8"
  batch_size: int = 8
  steps: int = 20
  dtype: str = "float64"
  steps_per_epoch: int = 5
  seed: int = 0
  teacher_checkpoint: str = ""  # A PyTorch state_dict of the teacher; '' = random.
  # What the PyTorch BNs store: 'biased' as Flax, or 'unbiased' as PyTorch does.
  torch_running_variance: str = "biased"
  conv_impl: str = "auto"
  dataset: str = "cifar100"


@dataclasses.dataclass
class StepReport:
  """One step's loss terms on each side and the max relative differences after it."""
  step: int
  jax_terms: dict[str, float]
  torch_terms: dict[str, float]
  parameters: dict[str, float]  # Group → max relative difference of its parameters.
  statistics: dict[str, float]  # Group → that of its BN running statistics.

  @property
  def terms(self) -> float:
    """The max over loss terms of |jax − torch| / max(|torch term|, |torch loss|)."""
    loss = abs(self.torch_terms["loss"])
    return max(abs(self.jax_terms[name] - value) / max(abs(value), loss)
               for name, value in self.torch_terms.items())

  def worst(self) -> float:
    return max(self.terms, *self.parameters.values(), *self.statistics.values())


def relative_difference(actual: np.ndarray, expected: np.ndarray) -> float:
  """max |actual − expected| / max |expected| (the absolute difference where expected is 0)."""
  actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
  scale = np.max(np.abs(expected))
  difference = np.max(np.abs(actual - expected))
  return float(difference / scale) if scale > 0 else float(difference)


def tree_difference(jax_tree: PyTree, torch_tree: PyTree) -> float:
  """The max over leaves of `relative_difference` (0 for empty trees)."""
  return max([relative_difference(a, b) for a, b in zip(jax.tree.leaves(jax_tree),
                                                          jax.tree.leaves(torch_tree))],
             default=0.0)


def _torch_teacher(case: ParityCase, num_classes: int) -> torch.nn.Module:
  """The teacher: a checkpoint, or random weights with BN statistics and affine parameters
  drawn away from (0, 1), in float32 values (Flax keeps running statistics in float32)."""
  torch.manual_seed(case.seed)
  teacher = torch_models.create_model(case.teacher, num_classes)
  if case.teacher_checkpoint:
    from jaxkd import torch_checkpoint  # pylint: disable=g-import-not-at-top
    state_dict = torch_checkpoint.read_state_dict(case.teacher_checkpoint)
    teacher.load_state_dict({k: torch.from_numpy(v) for k, v in state_dict.items()})
    return teacher
  with torch.no_grad():
    for module in teacher.modules():
      if isinstance(module, torch.nn.BatchNorm2d):
        module.running_mean.normal_(0.0, 0.2)
        module.running_var.uniform_(0.5, 2.0)
        module.weight.uniform_(0.5, 1.5)
        module.bias.normal_(0.0, 0.1)
  return teacher


def _to_torch(state_dict: dict[str, np.ndarray], dtype: torch.dtype) -> dict[str, torch.Tensor]:
  return {key: torch.from_numpy(np.array(value)).to(dtype) if value.dtype.kind == "f"
          else torch.from_numpy(np.array(value)) for key, value in state_dict.items()}


class ParityRun:
  """Both sides of a `ParityCase`, built from the same weights; `step()` advances both."""

  def __init__(self, case: ParityCase, workdir: str):
    self.case = case
    dtype = DTYPES[case.dtype]
    info = data.dataset_info(case.dataset)
    teacher = _torch_teacher(case, info.num_classes).to(dtype)
    teacher_path = os.path.join(workdir, f"{case.teacher}.pth")
    torch.save(teacher.state_dict(), teacher_path)

    config = recipes.cifar_run(case.method, case.student, case.dataset)
    if case.method == "atsc":
      config = atsc.share_student_optimizer(config)
    config.batch_size, config.seed, config.conv_impl = case.batch_size, case.seed, case.conv_impl
    config.teacher_model, config.teacher_checkpoint = case.teacher, teacher_path
    run, _ = run_builder.build_run(config, info, case.steps_per_epoch, step_lib.create_mesh())
    self.method, self.train_step = run.method, run.train_step
    # Flax creates running statistics in float32: in full precision from the start, so that
    # the step compiles once.
    self.state = run.state.replace(batch_stats=jax.tree.map(
        lambda x: x.astype(precision.full_precision()), run.state.batch_stats))

    student = torch_models.create_model(case.student, info.num_classes).to(dtype)
    student.load_state_dict(_to_torch(torch_layout.torch_state_dict_from_variables(
        case.student, self._variables("student")), dtype))
    projector = None
    if case.method in ("simkd", "atsc"):
      teacher_channels = self.state.params["extra"]["projector0"]["conv2"]["kernel"].shape[-1]
      student_channels = self.state.params["extra"]["projector0"]["conv0"]["kernel"].shape[-2]
      projector = torch_steps.Projector(student_channels, teacher_channels,
                                        run.method.hparams.factor).to(dtype)
      projector.load_state_dict(_to_torch(torch_layout.torch_state_dict_from_variables(
          "projector", self._variables("projector"), torch_layout.JAXKD_NAMES), dtype))
    self.torch_models = {"student": student, "projector": projector, "teacher": teacher}
    if case.torch_running_variance == "biased":
      for model in self.torch_models.values():
        if model is not None:
          torch_steps.with_biased_running_variance(model)
    self.torch_step = torch_steps.TorchDistillStep(
        case.method, run.method.hparams.to_dict(), student, teacher, projector,
        torch_steps.SGDSettings(config.optimizer.learning_rate, config.optimizer.momentum,
                                config.optimizer.weight_decay))
    self.rng = np.random.default_rng(case.seed + 1)
    self.info, self.dtype, self.steps_done = info, dtype, 0

  def _variables(self, group: str) -> dict[str, PyTree]:
    """jaxkd's variables of `group` (student, projector or teacher), as numpy arrays."""
    params, stats = self.state.params, self.state.batch_stats
    if group == "student":
      tree = {"params": params["student"], "batch_stats": stats["student"]}
    elif group == "projector":
      tree = {"params": params["extra"]["projector0"],
              "batch_stats": stats["extra"]["projector0"]}
    else:
      tree = {"params": params["teachers"][0], "batch_stats": stats["teachers"][0]}
    return jax.device_get(tree)

  def _torch_variables(self, group: str, like: dict[str, PyTree]) -> dict[str, PyTree]:
    """The PyTorch model of `group` as jaxkd variables shaped like `like`."""
    name = {"student": self.case.student, "teacher": self.case.teacher}.get(group, group)
    layout = torch_layout.JAXKD_NAMES if group == "projector" else None
    state_dict = {key: value.detach().cpu().numpy()
                  for key, value in self.torch_models[group].state_dict().items()}
    return torch_layout.variables_from_torch_state_dict(name, state_dict, like, layout)

  def step(self) -> StepReport:
    """One step of both sides on the next batch."""
    epoch = self.steps_done // self.case.steps_per_epoch + 1
    images = self.rng.standard_normal((self.case.batch_size, *self.info.image_shape))
    labels = self.rng.integers(0, self.info.num_classes, self.case.batch_size)
    batch = {"image": images.astype(precision.full_precision()),
             "label": labels.astype(np.int32)}
    self.state, metrics = self.train_step(
        self.state, jax.device_put(batch, step_lib.batch_sharding(step_lib.create_mesh())))
    torch_terms = self.torch_step.step(
        torch.from_numpy(images.transpose(0, 3, 1, 2)).to(self.dtype).contiguous(),
        torch.from_numpy(labels), epoch)
    metrics = jax.device_get(metrics)
    self.steps_done += 1
    parameters, statistics = {}, {}
    for group in GROUPS:
      if self.torch_models[group] is None:
        continue
      ours = self._variables(group)
      theirs = self._torch_variables(group, ours)
      parameters[group] = tree_difference(ours["params"], theirs["params"])
      statistics[group] = tree_difference(ours["batch_stats"], theirs["batch_stats"])
    return StepReport(self.steps_done, {name: float(metrics[name]) for name in torch_terms},
                      torch_terms, parameters, statistics)


def run_case(case: ParityCase, log=print) -> list[StepReport]:
  """`case.steps` steps of both sides; logs one line per step."""
  with tempfile.TemporaryDirectory(prefix="jaxkd_parity_") as workdir:
    run = ParityRun(case, workdir)
    reports = []
    for _ in range(case.steps):
      reports.append(run.step())
      log(format_report(case, reports[-1]))
  return reports


def format_report(case: ParityCase, report: StepReport) -> str:
  terms = ", ".join(f"{name} {report.jax_terms[name]:.10g}/{report.torch_terms[name]:.10g}"
                    for name in report.torch_terms)
  groups = ", ".join(f"{group} {report.parameters[group]:.2e} (stats "
                     f"{report.statistics[group]:.2e})" for group in report.parameters)
  return (f"{case.method} step {report.step}: jax/torch {terms}; max rel diff: terms "
          f"{report.terms:.2e}, {groups}")


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
  parser = argparse.ArgumentParser(prog="python -m benchmarks.parity", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--method", default=",".join(torch_steps.PARITY_METHODS),
                      help=f"comma list of {', '.join(torch_steps.PARITY_METHODS)}")
  parser.add_argument("--teacher", default="resnet20")
  parser.add_argument("--student", default="resnet8")
  parser.add_argument("--batch", type=int, default=8)
  parser.add_argument("--steps", type=int, default=20)
  parser.add_argument("--dtype", choices=tuple(DTYPES), default="float64")
  parser.add_argument("--tolerance", type=float, default=None,
                      help="max relative difference allowed (default: 1e-9 in float64, "
                           "1e-5 in float32)")
  parser.add_argument("--steps-per-epoch", type=int, default=5)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--teacher-checkpoint", default="",
                      help="PyTorch state_dict of the teacher (default: random weights)")
  parser.add_argument("--torch-running-variance", choices=RUNNING_VARIANCES, default="biased",
                      help="what PyTorch's BNs store: 'biased' as Flax and jaxkd (default), "
                           "'unbiased' as PyTorch does (the running variances then differ)")
  parser.add_argument("--conv-impl", default="auto", help="jaxkd's config.conv_impl")
  return parser.parse_args(argv)


def main(argv: Sequence[str]) -> int:
  args = parse_args(argv)
  jax.config.update("jax_enable_x64", args.dtype == "float64")
  tolerance = args.tolerance if args.tolerance is not None else TOLERANCES[args.dtype]
  failed = []
  for method in [name.strip() for name in args.method.split(",") if name.strip()]:
    case = ParityCase(method, args.teacher, args.student, args.batch, args.steps, args.dtype,
                      args.steps_per_epoch, args.seed, args.teacher_checkpoint,
                      args.torch_running_variance, args.conv_impl)
    worst = max(report.worst() for report in run_case(case, lambda line: print(line, flush=True)))
    verdict = "ok" if worst <= tolerance else "FAILED"
    print(f"{method}: max relative difference over {args.steps} steps in {args.dtype}: "
          f"{worst:.2e} (tolerance {tolerance:.0e}) {verdict}", flush=True)
    if worst > tolerance:
      failed.append(method)
  return 1 if failed else 0


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))
