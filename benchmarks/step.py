"""Times jaxkd's real train step, optionally against the same step in PyTorch.

    python -m benchmarks.step --method kd --teacher resnet32x4 --student resnet8x4 --batch 64
    python -m benchmarks.step --method all --pair all --compare torch --quick --write-results

The step is the one training uses: `jaxkd.run_builder.build_run` on a CIFAR-recipe config
(`jaxkd.recipes.cifar_run`), so methods with extra modules or a trainable teacher are
timed with everything they add. Teachers are randomly initialised and exported to a
temporary folder, from which `build_run` loads them as it loads trained ones. The batch
is synthetic (normal images, uniform labels) and placed with the step's batch sharding.

Per case: the first call (trace + compile + one step) is timed apart and the seconds
jax spent compiling are reported; then rounds of steps alternate with the PyTorch
reference (jax, torch, jax, torch, ...) and each side's median images/s is reported.
The step must not compile again after its first call: a recompilation fails the case.
On a GPU the step runs in bfloat16 (`config.half_precision`) and PyTorch with bf16
autocast and channels_last; `--precision fp32,bf16` times both. "fp32" on an NVIDIA GPU
lets both sides use TF32 tensor cores for convolutions (XLA's default precision, and
PyTorch's default `torch.backends.cudnn.allow_tf32`); PyTorch runs eager, with
`cudnn.benchmark` on.

Each row also gives the model FLOP/s and the MFU against the device's measured matrix
product rate (bf16 on accelerators, float32 on the CPU; see `benchmarks.flops`).
`--conv-impl xla,auto` times XLA's convolutions next to jaxkd's default choice (on the
CPU, the tap-sum convolutions of `jaxkd.ops.cpu_conv`). Each backend has its own section
of RESULTS.md, so CPU and GPU figures stand side by side.
"""

import argparse
import dataclasses
import importlib.util
import os
import sys
import tempfile
import time
import traceback
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import common
from benchmarks import flops
from jaxkd import checkpoint, data, methods, models, recipes, reporting, run_builder
from jaxkd import step as step_lib
from jaxkd.methods import base
from jaxkd.models import layers

PAIRS = (("resnet32x4", "resnet8x4"), ("resnet56", "resnet20"), ("wrn_40_2", "wrn_16_2"))
BASELINE_METHODS = ("ce", "kd", "dkd")
PRECISIONS = ("auto", "fp32", "bf16")


class RecompilationError(RuntimeError):
  """The train step compiled again after its first call."""


@dataclasses.dataclass(frozen=True)
class StepCase:
  """One measurement: `method` training `student` (from `teacher`, if the method has one)."""
  method: str
  teacher: str
  student: str
  batch_size: int
  bf16: bool = False
  dataset: str = "cifar100"
  conv_impl: str = "auto"
  replicas: int = 1  # Seeds trained together in one step (`jaxkd.replicas`).
  steps_per_call: int = 1  # Train steps per dispatch (a `lax.scan` over the step when > 1).

  @property
  def uses_teacher(self) -> bool:
    return methods.METHODS.get(self.method).teacher_mode is not base.TeacherMode.NONE

  @property
  def trains_teacher(self) -> bool:
    return methods.METHODS.get(self.method).teacher_mode is base.TeacherMode.TRAINABLE

  @property
  def models_text(self) -> str:
    return f"{self.teacher} → {self.student}" if self.uses_teacher else self.student

  def label(self) -> str:
    return (f"{self.method} {self.models_text} batch {self.batch_size} {self.precision} "
            f"conv {self.conv_text}" + (f" × {self.replicas} replicas" if self.replicas > 1
                                        else "")
            + (f", {self.steps_per_call} steps per call" if self.steps_per_call > 1 else ""))

  @property
  def conv_text(self) -> str:
    """The convolution used: `conv_impl` resolved on this backend ("xla" or "cpu")."""
    return layers.conv_impl_name(self.conv_impl)

  def training_flops_per_image(self) -> float:
    return flops.training_flops_per_image(
        self.student, self.teacher if self.uses_teacher else None, self.trains_teacher,
        self.dataset)

  @property
  def precision(self) -> str:
    return "bf16" if self.bf16 else "fp32"


@dataclasses.dataclass
class StepResult:
  """What one case measured; `error` is set (and rates are None) when the case failed."""
  case: StepCase
  jax_images_per_s: float | None = None
  compile_seconds: float | None = None
  first_call_seconds: float | None = None
  recompilations: int | None = None
  final_loss: float | None = None
  torch_images_per_s: float | None = None
  flops_per_image: float | None = None
  error: str | None = None

  @property
  def ratio(self) -> float | None:
    if self.jax_images_per_s is None or not self.torch_images_per_s:
      return None
    return self.jax_images_per_s / self.torch_images_per_s

  @property
  def model_flops_per_s(self) -> float | None:
    if self.jax_images_per_s is None or self.flops_per_image is None:
      return None
    return self.jax_images_per_s * self.flops_per_image


class TeacherExports:
  """Randomly initialised teachers exported under one folder, once per (model, data set)."""

  def __init__(self, root: str):
    self._root = root
    self._paths: dict[tuple[str, str], str] = {}

  def path(self, model_name: str, info: data.DatasetInfo) -> str:
    key = (model_name, info.name)
    if key not in self._paths:
      workdir = os.path.join(self._root, f"{model_name}-{info.name}")
      module = models.create_model(model_name, info.num_classes)
      variables = jax.jit(module.init, static_argnames="train")(
          jax.random.key(1), jnp.zeros((1, *info.image_shape), jnp.float32), train=False)
      checkpoint.export_model(
          workdir, {"params": variables["params"], "batch_stats": variables["batch_stats"]},
          {"model": model_name, "num_classes": info.num_classes, "dataset": info.name,
           "method": "random initialisation (benchmark)"})
      self._paths[key] = workdir
    return self._paths[key]


def case_config(case: StepCase, teacher_checkpoint: str):
  """The CIFAR-recipe config of `case`, its teacher loaded from `teacher_checkpoint`."""
  config = recipes.cifar_run(case.method, case.student, case.dataset)
  config.batch_size = case.batch_size
  config.half_precision = case.bf16
  config.conv_impl = case.conv_impl
  if case.uses_teacher:
    config.teacher_model = case.teacher
    config.teacher_checkpoint = teacher_checkpoint
  return config


def synthetic_batch(info: data.DatasetInfo, batch_size: int, mesh,
                    seed: int = 0) -> dict[str, jax.Array]:
  """Standard-normal images and uniform labels, sharded over the mesh's data axis."""
  rng = np.random.default_rng(seed)
  batch = {"image": rng.standard_normal((batch_size, *info.image_shape), np.float32),
           "label": rng.integers(0, info.num_classes, batch_size, dtype=np.int32)}
  return jax.device_put(batch, step_lib.batch_sharding(mesh))


class JaxTrainStep:
  """The real jaxkd train step of a config on a fixed synthetic batch (one per replica,
  stacked, for `replicas` > 1); with `steps_per_call` > 1, that many steps per call, as one
  compiled `lax.scan` over the step on the device-resident batch (no dispatch between them)."""

  def __init__(self, config, info: data.DatasetInfo, mesh, replicas: int = 1,
               steps_per_call: int = 1):
    method = methods.create_method(config)
    method.validate()
    if config.batch_size % mesh.size:
      raise ValueError(f"batch {config.batch_size} is not a multiple of the {mesh.size} devices")
    seeds = tuple(range(replicas)) if replicas > 1 else None
    run, _ = run_builder.build_run(config, info, info.num_train // config.batch_size, mesh, seeds)
    self.train_step, self.state = run.train_step, run.state
    if steps_per_call > 1:
      # The state leaves as it came in (the step's own shardings), so that the next call
      # finds the same executable.
      state_shardings = jax.tree.map(lambda x: x.sharding, run.state)
      self.train_step = jax.jit(
          lambda state, batch: jax.lax.scan(lambda s, _: run.train_step(s, batch), state,
                                            length=steps_per_call),
          out_shardings=(state_shardings, None), donate_argnums=0)
    if seeds is None:
      self.batch = synthetic_batch(info, config.batch_size, mesh)
    else:
      batches = [jax.device_get(synthetic_batch(info, config.batch_size, mesh, seed))
                 for seed in seeds]
      self.batch = jax.device_put(jax.tree.map(lambda *x: np.stack(x), *batches),
                                  step_lib.replica_batch_sharding(mesh))
    self.metrics: dict[str, Any] = {}

  def run(self, steps: int) -> float:
    """Seconds for `steps` steps, the device idle at the end."""
    start = time.perf_counter()
    for _ in range(steps):
      self.state, self.metrics = self.train_step(self.state, self.batch)
    jax.block_until_ready(self.state)
    return time.perf_counter() - start

  def cache_size(self) -> int | None:
    """Executables held by the jitted step (a private jax API; None where it is absent)."""
    size = getattr(self.train_step, "_cache_size", None)
    return size() if size is not None else None


def measure(case: StepCase, reps: common.Repetitions, teachers: TeacherExports, mesh,
            torch_options=None) -> StepResult:
  """Compiles and times `case`, alternating rounds with the PyTorch reference if given."""
  info = data.dataset_info(case.dataset)
  teacher_checkpoint = teachers.path(case.teacher, info) if case.uses_teacher else ""
  jax_step = JaxTrainStep(case_config(case, teacher_checkpoint), info, mesh, case.replicas,
                          case.steps_per_call)
  result = StepResult(case)
  with common.CompileCounter() as first_call:
    result.first_call_seconds = jax_step.run(1)
  result.compile_seconds = first_call.seconds
  torch_step = None
  if torch_options is not None:
    torch_step = _torch_step(case, info, torch_options)
    torch_step.run(_torch_reference().WARMUP_STEPS + reps.warmup_steps)
  jax_seconds, torch_seconds = [], []
  with common.CompileCounter() as later_calls:
    jax_step.run(reps.warmup_steps)
    for _ in range(reps.rounds):
      jax_seconds.append(jax_step.run(reps.steps_per_round))
      if torch_step is not None:
        torch_seconds.append(torch_step.run(reps.steps_per_round))
  result.recompilations = later_calls.compilations
  cache_size = jax_step.cache_size()
  if later_calls.compilations or cache_size not in (None, 1):
    raise RecompilationError(
        f"{case.label()}: the train step compiled {later_calls.compilations} more time(s) after "
        f"its first call and holds {cache_size} executables (expected 0 and 1)")
  images = reps.steps_per_round * case.batch_size  # A "step" of `reps` is one call.
  result.jax_images_per_s = common.median_rate(
      images * case.replicas * case.steps_per_call, jax_seconds)
  if torch_seconds:  # One PyTorch run, against all the replicas of the JAX step.
    result.torch_images_per_s = common.median_rate(images, torch_seconds)
  result.final_loss = float(np.mean(jax_step.metrics["loss"]))
  result.flops_per_image = case.training_flops_per_image()
  return result


def _torch_reference():
  """benchmarks.torch_reference, imported only when PyTorch is asked for (it is optional)."""
  return importlib.import_module("benchmarks.torch_reference")


def _torch_step(case: StepCase, info: data.DatasetInfo, options):
  hparams = methods.default_config(case.method).to_dict()
  return _torch_reference().TorchTrainStep(
      case.method, hparams, case.student, case.teacher, info.num_classes, case.batch_size,
      info.image_shape, options)


def run_cases(cases: Sequence[StepCase], reps: common.Repetitions, torch_options=None,
              log=print, on_result=None) -> list[StepResult]:
  """Measures every case; a failing case is reported with its error and the others still run.

  `on_result(result)`, if given, is called after each case (to save partial results).
  """
  mesh = step_lib.create_mesh()
  results = []
  with tempfile.TemporaryDirectory(prefix="jaxkd_benchmark_teachers_") as root:
    teachers = TeacherExports(root)
    for case in cases:
      wants_torch = torch_options is not None and _has_torch_reference(case)
      try:
        result = measure(case, reps, teachers, mesh, torch_options if wants_torch else None)
      except Exception as error:  # pylint: disable=broad-except
        traceback.print_exc()
        result = StepResult(case, error=f"{type(error).__name__}: {error}")
      log(format_result(result))
      results.append(result)
      if on_result is not None:
        on_result(result)
  return results


def _has_torch_reference(case: StepCase) -> bool:
  names = (case.student, case.teacher) if case.uses_teacher else (case.student,)
  reference = _torch_reference()
  return (case.method in reference.TORCH_METHODS
          and all(name in reference.MODEL_NAMES for name in names))


def format_result(result: StepResult) -> str:
  if result.error:
    return f"{result.case.label()}: FAILED {result.error}"
  text = (f"{result.case.label()}: jax {common.format_number(result.jax_images_per_s)} "
          f"images/s (compile {common.format_number(result.compile_seconds)} s, first call "
          f"{common.format_number(result.first_call_seconds)} s, "
          f"{result.recompilations} recompilations, loss {result.final_loss:.4g})")
  if result.torch_images_per_s is not None:
    text += (f", torch {common.format_number(result.torch_images_per_s)} images/s, "
             f"jax/torch {common.format_number(result.ratio, 2)}")
  return text


def results_table(results: Sequence[StepResult], peak_flops_per_s: float | None) -> list[str]:
  """One row per case; MFU is left out (a dash) when no peak rate was measured."""
  headers = ("method", "teacher → student", "batch", "precision", "conv", "replicas",
             "steps per call",
             "JAX images/s (all replicas)", "per replica",
             "compile s", "recompilations", "PyTorch images/s", "JAX / PyTorch",
             "JAX model TFLOP/s", "MFU")
  number = common.format_number
  rows = []
  for r in results:
    case = (r.case.method, r.case.models_text, str(r.case.batch_size), r.case.precision,
            r.case.conv_text, str(r.case.replicas), str(r.case.steps_per_call))
    if r.error:
      rows.append((*case, f"failed: {r.error}", *("—",) * 7))
      continue
    tflops = r.model_flops_per_s / 1e12 if r.model_flops_per_s is not None else None
    mfu = (f"{100 * r.model_flops_per_s / peak_flops_per_s:.1f}%"
           if peak_flops_per_s and r.model_flops_per_s is not None else "—")
    rows.append((*case, number(r.jax_images_per_s),
                 number(r.jax_images_per_s / r.case.replicas), number(r.compile_seconds),
                 str(r.recompilations), number(r.torch_images_per_s), number(r.ratio, 2),
                 number(tflops, 3), mfu))
  return common.markdown_table(headers, rows)


def measure_peak(on_cpu: bool) -> tuple[float, str]:
  """The device's measured matrix-product rate (FLOP/s) and a line that says how."""
  if on_cpu:
    dtype, size, repeats = jnp.float32, 1024, 4
  else:
    dtype, size, repeats = jnp.bfloat16, 8192, 10
  rate = flops.measure_matmul_flops_per_s(dtype, size, repeats)
  name = jnp.dtype(dtype).name
  return rate, (f"MFU against the measured {name} matrix-product rate, "
                f"{rate / 1e12:.3g} TFLOP/s ({size}×{size}×{size}); model FLOPs = "
                "3·F(student) + F(frozen teacher), 2 × multiply-adds of convolutions and "
                "matrix products (benchmarks/flops.py)")


def method_names(text: str) -> list[str]:
  """'all' → ce, kd, dkd, then every other registered method (sorted); else a comma list."""
  if text == "all":
    return [*BASELINE_METHODS,
            *(name for name in methods.METHODS.names() if name not in BASELINE_METHODS)]
  names = [name.strip() for name in text.split(",") if name.strip()]
  for name in names:
    methods.METHODS.get(name)  # Unknown names raise, listing the valid ones.
  return names


def pairs(text: str | None, teacher: str, student: str) -> list[tuple[str, str]]:
  """'all' → PAIRS; 'T:S,T:S' → those; None → (teacher, student)."""
  if text is None:
    return [(teacher, student)]
  if text == "all":
    return list(PAIRS)
  found = []
  for item in text.split(","):
    parts = item.strip().split(":")
    if len(parts) != 2 or not all(parts):
      raise ValueError(f"--pair takes 'all' or TEACHER:STUDENT items, got '{item}'")
    found.append((parts[0], parts[1]))
  return found


def positive_counts(text: str, flag: str) -> list[int]:
  """'1,4,8' → [1, 4, 8]; each at least 1."""
  try:
    counts = [int(part) for part in text.split(",") if part.strip()]
  except ValueError:
    counts = []
  if not counts or min(counts) < 1:
    raise ValueError(f"{flag} takes positive integers, e.g. 1,4,8; got '{text}'")
  return counts


def resolve_bf16(precision: str) -> bool:
  """bf16 on a GPU or TPU unless told otherwise; float32 on the CPU."""
  if precision == "auto":
    return jax.default_backend() != "cpu"
  return precision == "bf16"


def results_section(tag: str = "") -> str:
  """This harness's RESULTS.md section for JAX's default backend (cpu, gpu or tpu), and a tag
  that keeps runs of other settings (say a larger batch) apart."""
  return f"benchmarks.step.{jax.default_backend()}" + (f".{tag}" if tag else "")


def torch_options(args: argparse.Namespace, bf16: bool):
  """The PyTorch reference's settings: CUDA + channels_last when jax runs on a GPU."""
  import torch  # pylint: disable=g-import-not-at-top
  on_gpu = jax.default_backend() == "gpu" and torch.cuda.is_available()
  return _torch_reference().TorchOptions(
      device="cuda" if on_gpu else "cpu", channels_last=args.channels_last or on_gpu,
      bf16=bf16, threads=args.threads)


def torch_description(options) -> str:
  import torch  # pylint: disable=g-import-not-at-top
  layout = "channels_last" if options.channels_last else "NCHW"
  precision = "bf16 autocast" if options.bf16 else "float32"
  return (f"PyTorch {torch.__version__} on {options.device}, {torch.get_num_threads()} threads, "
          f"{layout}, {precision}")


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
  parser = argparse.ArgumentParser(prog="python -m benchmarks.step", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--method", default="kd", help="a method, a comma list, or 'all'")
  parser.add_argument("--teacher", default="resnet32x4")
  parser.add_argument("--student", default="resnet8x4")
  parser.add_argument("--pair", default=None,
                      help="'all' (the three CIFAR pairs) or TEACHER:STUDENT[,...]; "
                           "overrides --teacher/--student")
  parser.add_argument("--batch", type=int, default=64, help="global batch size")
  parser.add_argument("--dataset", default="cifar100",
                      help="data set whose image shape and classes the synthetic batch has")
  parser.add_argument("--conv-impl", default="auto",
                      help="jaxkd's config.conv_impl, or a comma list (e.g. xla,auto)")
  parser.add_argument("--replicas", default="1",
                      help="seeds trained together in one step (config.num_replicas), or a "
                           "comma list, e.g. 1,4,8: images/s then counts every replica's")
  parser.add_argument("--steps-per-call", default="1",
                      help="train steps per dispatch (a lax.scan over the step), or a comma "
                           "list, e.g. 1,8")
  parser.add_argument("--compare", choices=("none", "torch"), default="none")
  parser.add_argument("--precision", default="auto",
                      help="auto (bf16 on a GPU, float32 on the CPU), fp32, bf16, "
                           "or a comma list (fp32,bf16)")
  parser.add_argument("--no-mfu", action="store_true",
                      help="skip measuring the device's matrix-product rate (no MFU column)")
  parser.add_argument("--threads", type=int, default=os.cpu_count(), help="PyTorch CPU threads")
  parser.add_argument("--channels-last", action="store_true",
                      help="PyTorch in channels_last memory format (always on a GPU)")
  parser.add_argument("--quick", action="store_true", help="fewer repetitions (noisy numbers)")
  parser.add_argument("--rounds", type=int, default=None, help="timed rounds (overrides)")
  parser.add_argument("--steps", type=int, default=None, help="steps per round (overrides)")
  parser.add_argument("--device-label", default=None,
                      help="hardware text for RESULTS.md (default: detected)")
  parser.add_argument("--write-results", action="store_true",
                      help="regenerate this harness's section of benchmarks/RESULTS.md")
  parser.add_argument("--results-path", default=common.RESULTS_PATH)
  parser.add_argument("--results-tag", default="",
                      help="a RESULTS.md section of its own for this run (e.g. batch512)")
  return parser.parse_args(argv)


def run_from_args(args: argparse.Namespace, argv: Sequence[str]) -> list[StepResult]:
  """Measures what the command line asks for, prints a table, and writes RESULTS.md if asked."""
  if args.compare == "torch" and importlib.util.find_spec("torch") is None:
    raise SystemExit("--compare torch needs PyTorch: pip install -r benchmarks/requirements.txt")
  precisions = list(dict.fromkeys(
      resolve_bf16(p) for p in common.comma_list(args.precision, PRECISIONS, "--precision")))
  conv_impls = common.comma_list(args.conv_impl, layers.CONV_IMPLS, "--conv-impl")
  reps = common.repetitions(args.quick, args.rounds, args.steps)
  hardware = args.device_label or reporting.hardware_description()
  print(f"{hardware}; {reps}", flush=True)
  peak, peak_line = (None, None) if args.no_mfu else measure_peak(
      jax.default_backend() == "cpu")
  if peak_line:
    print(peak_line, flush=True)
  cases_per_precision = [
      [StepCase(method, teacher, student, args.batch, bf16, args.dataset, conv_impl, count,
                steps)
       for teacher, student in pairs(args.pair, args.teacher, args.student)
       for method in method_names(args.method)
       for conv_impl in conv_impls
       for count in positive_counts(args.replicas, "--replicas")
       for steps in positive_counts(args.steps_per_call, "--steps-per-call")]
      for bf16 in precisions]
  total = sum(map(len, cases_per_precision))
  results, torch_lines = [], []

  def write():
    """(Re)writes this run's RESULTS.md section: after every case, so a killed run keeps
    what it measured."""
    extra = [*torch_lines,
             f"jaxkd on backend {jax.default_backend()}: conv 'cpu' = the tap-sum convolutions "
             "of jaxkd.ops.cpu_conv, 'xla' = XLA's own",
             f"Repetitions: {reps.rounds} rounds of {reps.steps_per_round} step(s), "
             f"{reps.warmup_steps} warm-up step(s) after the compiling call; median images/s",
             "Data: synthetic batch of the data set's shape; teachers randomly initialised"]
    if peak_line:
      extra.append(peak_line)
    title = f"## Train step on {jax.default_backend()}, batch {args.batch}"
    if len(results) < total:
      title += f" (partial: {len(results)} of {total} cases)"
    lines = [title, "", *common.run_description(
        common.command_line("benchmarks.step", argv), hardware, extra), "",
             *results_table(results, peak)]
    common.write_results_section(results_section(args.results_tag), lines, args.results_path)

  def record(result: StepResult) -> None:
    results.append(result)
    if args.write_results:
      write()

  for bf16, cases in zip(precisions, cases_per_precision):
    options = torch_options(args, bf16) if args.compare == "torch" else None
    if options is not None:
      torch_lines.append(torch_description(options))
    run_cases(cases, reps, options, log=lambda line: print(line, flush=True), on_result=record)
  print("\n".join(results_table(results, peak)), flush=True)
  return results


def main(argv: Sequence[str]) -> int:
  results = run_from_args(parse_args(argv), argv)
  return 1 if any(r.error for r in results) else 0


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))
