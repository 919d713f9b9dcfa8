"""Times XLA's convolution against `jaxkd.ops.cpu_conv` on the CPU, per piece and per model.

    python -m benchmarks.conv_cpu                       # layers, then resnet8x4
    python -m benchmarks.conv_cpu --models resnet8x4 MobileNetV2 ShuffleV1 --rounds 5
    python -m benchmarks.conv_cpu --compare torch --models   # layers only, PyTorch beside

Layers: forward, input gradient, weight gradient and `value_and_grad` of Σ y² for CIFAR
batch-64 geometries of the zoo. Models: a cross-entropy train step (forward + CE + grad,
batch 64, 100 classes) with `conv_impl="xla"` and `"cpu"`. Each timing is the median of
`--rounds` calls after one warm-up call; the two implementations alternate call by call,
so that load from other processes falls on both alike. `--compare torch` adds PyTorch's
CPU convolution (oneDNN, NCHW) for each layer piece, timed in the same alternation, and
the GFLOP/s of the faster jaxkd choice and of PyTorch (2 FLOPs per multiply-add).
"""

import argparse
import importlib
import statistics
import sys
import time
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax

from benchmarks import common
from jaxkd import reporting
from jaxkd.ops import cpu_conv

DIMENSION_NUMBERS = ("NHWC", "HWIO", "NHWC")
IMPLS = {"xla": lax.conv_general_dilated, "cpu": cpu_conv.conv_general_dilated}

# name: (batch, size, in_channels, out_channels, kernel, stride, padding, groups)
LAYERS = {
    "3x3 32x32 64->64 s1": (64, 32, 64, 64, 3, 1, 1, 1),
    "3x3 32x32 64->128 s2": (64, 32, 64, 128, 3, 2, 1, 1),
    "3x3 16x16 128->128 s1": (64, 16, 128, 128, 3, 1, 1, 1),
    "3x3 8x8 256->256 s1": (64, 8, 256, 256, 3, 1, 1, 1),
    "3x3 32x32 3->32 s1 (stem)": (64, 32, 3, 32, 3, 1, 1, 1),
    "1x1 32x32 64->128 s2": (64, 32, 64, 128, 1, 2, 0, 1),
    "1x1 16x16 96->24 s1": (64, 16, 96, 24, 1, 1, 0, 1),
    "dw 3x3 32x32 96 s1": (64, 32, 96, 96, 3, 1, 1, 96),
    "dw 3x3 16x16 192 s2": (64, 16, 192, 192, 3, 2, 1, 192),
    "g3 1x1 16x16 240->240": (64, 16, 240, 240, 1, 1, 0, 3),
    "g3 3x3 16x16 60->60 s1": (64, 16, 60, 60, 3, 1, 1, 3),
}


def time_alternating(fns: dict[str, Callable[[], object]], rounds: int) -> dict[str, float]:
  """Median milliseconds per call of each thunk, calls interleaved, after one warm-up."""
  for fn in fns.values():
    jax.block_until_ready(fn())
  times = {name: [] for name in fns}
  for _ in range(rounds):
    for name, fn in fns.items():
      start = time.perf_counter()
      jax.block_until_ready(fn())
      times[name].append(time.perf_counter() - start)
  return {name: 1e3 * statistics.median(ts) for name, ts in times.items()}


def layer_pieces(conv, layer) -> dict[str, Callable[[], object]]:
  """Jitted thunks for the forward, input grad, weight grad and value_and_grad of one layer."""
  batch, size, ci, co, k, stride, pad, groups = layer
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.standard_normal((batch, size, size, ci), np.float32))
  w = jnp.asarray(rng.standard_normal((k, k, ci // groups, co), np.float32))
  apply = lambda x, w: conv(x, w, (stride, stride), [(pad, pad)] * 2,
                            dimension_numbers=DIMENSION_NUMBERS, feature_group_count=groups)
  g = jnp.asarray(rng.standard_normal(jax.eval_shape(apply, x, w).shape, np.float32))
  forward = jax.jit(apply)
  input_grad = jax.jit(lambda x, w, g: jax.vjp(lambda x: apply(x, w), x)[1](g)[0])
  weight_grad = jax.jit(lambda x, w, g: jax.vjp(lambda w: apply(x, w), w)[1](g)[0])
  value_and_grad = jax.jit(jax.value_and_grad(lambda x, w: jnp.sum(apply(x, w) ** 2), (0, 1)))
  return {
      "forward": lambda: forward(x, w),
      "input_grad": lambda: input_grad(x, w, g),
      "weight_grad": lambda: weight_grad(x, w, g),
      "value_and_grad": lambda: value_and_grad(x, w),
  }


def torch_layer_pieces(layer) -> dict[str, Callable[[], object]]:
  """The same four pieces with PyTorch's CPU convolution (NCHW, its native layout)."""
  torch = importlib.import_module("torch")
  batch, size, ci, co, k, stride, pad, groups = layer
  generator = torch.Generator().manual_seed(0)
  x = torch.randn(batch, ci, size, size, generator=generator)
  w = torch.randn(co, ci // groups, k, k, generator=generator)
  conv = lambda x, w: torch.nn.functional.conv2d(x, w, None, stride, pad, 1, groups)
  g = torch.randn(conv(x, w).shape, generator=generator)

  def value_and_grad():
    xr, wr = x.clone().requires_grad_(), w.clone().requires_grad_()
    value = (conv(xr, wr) ** 2).sum()
    value.backward()
    return value, xr.grad, wr.grad

  no_grad = torch.no_grad()  # A decorator too: the pieces below record no autograd graph.
  return {
      "forward": no_grad(lambda: conv(x, w)),
      "input_grad": no_grad(lambda: torch.nn.grad.conv2d_input(
          x.shape, w, g, stride, pad, 1, groups)),
      "weight_grad": no_grad(lambda: torch.nn.grad.conv2d_weight(
          x, w.shape, g, stride, pad, 1, groups)),
      "value_and_grad": value_and_grad,
  }


def layer_flops(layer, piece: str) -> float:
  """2 × multiply-adds of one piece (forward, input grad and weight grad cost the same)."""
  batch, size, ci, co, k, stride, pad, groups = layer
  out = (size + 2 * pad - k) // stride + 1
  one = 2.0 * batch * out * out * co * k * k * ci / groups
  return 3 * one if piece == "value_and_grad" else one


def bench_layers(names: Sequence[str], rounds: int, compare_torch: bool) -> list[str]:
  """Prints (and returns) the per-layer table."""
  header = "| layer | piece | xla ms | cpu ms | speed-up |"
  if compare_torch:
    header += " torch ms | jaxkd best GFLOP/s | torch GFLOP/s | jaxkd best / torch |"
  lines = [header, "|" + "---|" * (header.count("|") - 1)]
  print("\n".join(lines))
  for name in names:
    pieces = {impl: layer_pieces(conv, LAYERS[name]) for impl, conv in IMPLS.items()}
    if compare_torch:
      pieces["torch"] = torch_layer_pieces(LAYERS[name])
    for piece in pieces["xla"]:
      ms = time_alternating({impl: pieces[impl][piece] for impl in pieces}, rounds)
      line = (f"| {name} | {piece} | {ms['xla']:.1f} | {ms['cpu']:.1f} | "
              f"{ms['xla'] / ms['cpu']:.2f}× |")
      if compare_torch:
        best = min(ms["xla"], ms["cpu"])
        gflop = layer_flops(LAYERS[name], piece) / 1e9
        line += (f" {ms['torch']:.1f} | {gflop / best * 1e3:.0f} | "
                 f"{gflop / ms['torch'] * 1e3:.0f} | {ms['torch'] / best:.2f} |")
      print(line, flush=True)
      lines.append(line)
  return lines


def model_step(model_name: str, conv_impl: str, batch: int) -> Callable[[], object]:
  """A jitted CE train step (forward + CE + grad) of a zoo model on a synthetic batch."""
  from jaxkd.models import create_model  # pylint: disable=g-import-not-at-top
  model = create_model(model_name, num_classes=100, conv_impl=conv_impl)
  rng = np.random.default_rng(0)
  images = jnp.asarray(rng.standard_normal((batch, 32, 32, 3), np.float32))
  labels = jnp.asarray(rng.integers(0, 100, batch))
  variables = model.init(jax.random.key(0), images, train=False)

  @jax.jit
  def step(variables, images, labels):
    def loss_fn(params):
      (_, logits), updates = model.apply(
          {**variables, "params": params}, images, train=True, mutable=["batch_stats"])
      return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean(), updates
    return jax.value_and_grad(loss_fn, has_aux=True)(variables["params"])

  return lambda: step(variables, images, labels)


def bench_models(names: Sequence[str], batch: int, rounds: int) -> list[str]:
  """Prints (and returns) the per-model table."""
  lines = [f"| model (CE step, batch {batch}) | xla img/s | cpu img/s | speed-up |",
           "|---|---|---|---|"]
  print("\n" + "\n".join(lines))
  for name in names:
    ms = time_alternating({impl: model_step(name, impl, batch) for impl in IMPLS}, rounds)
    line = (f"| {name} | {batch / ms['xla'] * 1e3:.1f} | {batch / ms['cpu'] * 1e3:.1f} | "
            f"{ms['xla'] / ms['cpu']:.2f}× |")
    print(line, flush=True)
    lines.append(line)
  return lines


def main(argv: Sequence[str] | None = None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--layers", nargs="*", default=list(LAYERS), choices=list(LAYERS))
  parser.add_argument("--models", nargs="*", default=["resnet8x4"])
  parser.add_argument("--batch", type=int, default=64)
  parser.add_argument("--rounds", type=int, default=7)
  parser.add_argument("--compare", choices=("none", "torch"), default="none",
                      help="time PyTorch's CPU convolution beside each layer piece")
  parser.add_argument("--write-results", action="store_true",
                      help="regenerate this harness's section of benchmarks/RESULTS.md")
  parser.add_argument("--results-path", default=common.RESULTS_PATH)
  args = parser.parse_args(argv)
  print(f"backend={jax.default_backend()} devices={jax.device_count()} jax={jax.__version__}")
  tables = []
  if args.layers:
    tables.append(bench_layers(args.layers, args.rounds, args.compare == "torch"))
  if args.models:
    tables.append(bench_models(args.models, args.batch, args.rounds))
  if args.write_results:
    extra = [f"Median of {args.rounds} calls after a warm-up, implementations alternating; "
             "'cpu' = jaxkd.ops.cpu_conv, 'xla' = lax.conv_general_dilated"]
    if args.compare == "torch":
      torch = importlib.import_module("torch")
      extra.append(f"PyTorch {torch.__version__}, {torch.get_num_threads()} threads, NCHW")
    argv = sys.argv[1:] if argv is None else argv
    lines = ["## Convolutions on the CPU: XLA, jaxkd's tap sums and PyTorch", "",
             *common.run_description(common.command_line("benchmarks.conv_cpu", argv),
                                     reporting.hardware_description(), extra)]
    for table in tables:
      lines += ["", *table]
    common.write_results_section("benchmarks.conv_cpu", lines, args.results_path)


if __name__ == "__main__":
  main()
