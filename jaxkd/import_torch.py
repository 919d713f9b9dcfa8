"""Imports a PyTorch checkpoint of a zoo model as a jaxkd export, a teacher for later runs.

    python -m jaxkd.import_torch --model resnet56 --num_classes 100 \\
        --checkpoint cifar100_resnet56.pth --out ~/jaxkd/teachers/resnet56_c100 \\
        --mean 0.5070 0.4865 0.4409 --std 0.2673 0.2564 0.2761 --dataset cifar100

The checkpoint is a state_dict in the model's published layout (`jaxkd.torch_layout`), as
.pth/.pt/.th, .safetensors or .npz, bare or wrapped (`jaxkd.torch_checkpoint`). OUT receives
`variables/` and `model.json` exactly as a finished run exports them, so
`--config.teacher_checkpoint=OUT` distills from it. model.json records the model, the number of
classes, the source file, the data set when given, and the input normalisation the teacher was
trained with (`input_mean`, `input_std`: per channel on [0, 1] pixels; null when not given).
An OUT that holds a run or a model is refused unless `--overwrite` is given (`output_paths`).
"""

import argparse
import os
import sys
from typing import Any, Sequence

import jax
import jax.numpy as jnp

from jaxkd import checkpoint, command_errors, models, output_paths, torch_checkpoint
from jaxkd import torch_layout

PyTree = Any


def variables_template(model_name: str, num_classes: int) -> PyTree:
  """The shapes and dtypes of `model_name`'s variables (on the first local device), built on
  the input size its published definition is made for (32×32×3 CIFAR, 224×224×3 ImageNet)."""
  size = torch_layout.layout_of(model_name).image_size
  module = models.create_model(model_name, num_classes)
  shapes = jax.eval_shape(lambda: module.init(
      jax.random.key(0), jnp.zeros((1, size, size, 3), jnp.float32), train=False))
  device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  return jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=device), shapes)


def _normalisation(values: Sequence[float] | None, name: str) -> list[float] | None:
  if values is None:
    return None
  if len(values) != 3 or (name == "std" and min(values) <= 0):
    raise ValueError(f"--{name} takes three per-channel values"
                     + (", all positive" if name == "std" else "") + f"; got {list(values)}")
  return [float(value) for value in values]


def import_checkpoint(model_name: str, num_classes: int, checkpoint_path: str, out_dir: str,
                      input_mean: Sequence[float] | None = None,
                      input_std: Sequence[float] | None = None,
                      dataset: str | None = None, overwrite: bool = False) -> dict:
  """Converts the state_dict at `checkpoint_path` into the jaxkd export `out_dir`.

  Returns the description written to model.json. Nothing is written when the checkpoint does
  not fit the model (the ValueError names every missing, unexpected and wrongly shaped key),
  nor when `out_dir` holds a run or a model and `overwrite` is False (`output_paths`).
  """
  output_paths.check_output(out_dir, "--out", overwrite, output_paths.Kind.DIRECTORY)
  if (input_mean is None) != (input_std is None):
    raise ValueError("give both --mean and --std (the teacher's input normalisation), or "
                     "neither")
  description = {
      "model": model_name, "num_classes": num_classes,
      "source": os.path.abspath(checkpoint_path), "dataset": dataset,
      "input_mean": _normalisation(input_mean, "mean"),
      "input_std": _normalisation(input_std, "std"),
  }
  like = variables_template(model_name, num_classes)
  state_dict = torch_checkpoint.read_state_dict(checkpoint_path)
  variables = torch_layout.variables_from_torch_state_dict(model_name, state_dict, like)
  with output_paths.writing(out_dir, "--out"):
    checkpoint.write_export(out_dir, variables, description)
  return description


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
  parser = argparse.ArgumentParser(prog="python -m jaxkd.import_torch",
                                   description=__doc__.splitlines()[0])
  parser.add_argument("--model", required=True,
                      help=f"zoo model name: {', '.join(torch_layout.supported_models())}")
  parser.add_argument("--num_classes", required=True, type=int, help="classes of its head")
  parser.add_argument("--checkpoint", required=True,
                      help="state_dict file: " + " ".join(torch_checkpoint.SUFFIXES))
  parser.add_argument("--out", required=True, help="export directory to write")
  parser.add_argument("--mean", nargs=3, type=float, metavar="M",
                      help="per-channel input mean the teacher was trained with")
  parser.add_argument("--std", nargs=3, type=float, metavar="S",
                      help="per-channel input std the teacher was trained with")
  parser.add_argument("--dataset", help="data set the teacher was trained on (recorded only)")
  parser.add_argument("--overwrite", action="store_true",
                      help="write into --out even when it holds a run or a model")
  return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
  args = parse_args(sys.argv[1:] if argv is None else argv)
  with command_errors.exit_on_bad_input("jaxkd.import_torch"):
    import_checkpoint(args.model, args.num_classes, args.checkpoint, args.out,
                      args.mean, args.std, args.dataset, args.overwrite)
  print(f"wrote {os.path.abspath(args.out)}: {args.model} with {args.num_classes} classes from "
        f"{args.checkpoint}")


if __name__ == "__main__":
  main()
