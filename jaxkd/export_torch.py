"""Writes a trained jaxkd model as a PyTorch state_dict in its model's published layout.

    python -m jaxkd.export_torch --checkpoint ~/jaxkd/kd_c100/student --out resnet8x4.pth

`--checkpoint` is a jaxkd export or the workdir of a finished run (holding export/). The file
(.pth/.pt/.th, .safetensors or .npz, by suffix) loads with `load_state_dict(strict=True)` into
the published PyTorch definition of the model (RepDistiller / mdistiller / torchvision; see
`jaxkd.torch_layout`), e.g. `model.load_state_dict(torch.load(path, weights_only=True))`.
A model file already at `--out` is replaced only with `--overwrite` (`output_paths`).
"""

import argparse
import sys
from typing import Sequence

from jaxkd import checkpoint, command_errors, import_torch, output_paths, torch_checkpoint
from jaxkd import torch_layout


def export_checkpoint(checkpoint_path: str, out_path: str, overwrite: bool = False) -> dict:
  """Writes the export at `checkpoint_path` to the state_dict file `out_path`; returns its
  description (model.json). A model file already at `out_path` is replaced only when
  `overwrite` is True (`output_paths`)."""
  if not torch_checkpoint.is_torch_checkpoint(out_path):
    raise ValueError(f"--out '{out_path}' must end in {', '.join(torch_checkpoint.SUFFIXES)}")
  if torch_checkpoint.is_torch_checkpoint(checkpoint_path):
    raise ValueError(f"--checkpoint '{checkpoint_path}' is a PyTorch state_dict already: give "
                     "a jaxkd export or the workdir of a finished run")
  output_paths.check_output(out_path, "--out", overwrite, output_paths.Kind.FILE)
  description = checkpoint.read_description(checkpoint_path)
  model_name, num_classes = description.get("model"), description.get("num_classes")
  if num_classes is None:
    raise ValueError(f"the model.json of '{checkpoint_path}' does not record num_classes: add "
                     "\"num_classes\": N to it (the classes of the model's head)")
  like = import_torch.variables_template(model_name, num_classes)
  variables, _ = checkpoint.load_exported_model(checkpoint_path, model_name, like, "model")
  state_dict = torch_layout.torch_state_dict_from_variables(model_name, variables)
  with output_paths.writing(out_path, "--out"):
    torch_checkpoint.write_state_dict(state_dict, out_path)
  return description


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
  parser = argparse.ArgumentParser(prog="python -m jaxkd.export_torch",
                                   description=__doc__.splitlines()[0])
  parser.add_argument("--checkpoint", required=True,
                      help="jaxkd export directory, or a finished run's workdir")
  parser.add_argument("--out", required=True,
                      help="state_dict file to write: " + " ".join(torch_checkpoint.SUFFIXES))
  parser.add_argument("--overwrite", action="store_true",
                      help="replace a model file already at --out")
  return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
  args = parse_args(sys.argv[1:] if argv is None else argv)
  with command_errors.exit_on_bad_input("jaxkd.export_torch"):
    description = export_checkpoint(args.checkpoint, args.out, args.overwrite)
  print(f"wrote {args.out}: {description['model']} with {description['num_classes']} classes, "
        f"layout of {torch_layout.layout_of(description['model']).source}")


if __name__ == "__main__":
  main()
