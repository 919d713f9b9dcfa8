"""`python -m jaxkd.evaluate`: the top-1/top-5 accuracy of a trained model on a data set.

    python -m jaxkd.evaluate --checkpoint=../shared/teachers/cifar100_resnet56.pth \
        --model=resnet56 --dataset=cifar100 --data_dir=DIR \
        --mean=0.5070,0.4865,0.4409 --std=0.2673,0.2564,0.2761 --output=eval.json

The checkpoint is a jaxkd export (or the workdir of a finished run; its model name, classes
and input normalisation are read from it) or a PyTorch state_dict (`.pth`, `.pt`, `.th`,
`.safetensors`, `.npz`; give --model, and the normalisation it was trained with as
--mean/--std when it differs from the data set's). Every example of the split is scored once,
on all devices. It prints one line and, with --output, writes the same as JSON.
"""

import json
import math
import sys
from typing import Any, Sequence

import jax
import numpy as np
from absl import app, flags

from jaxkd import checkpoint, data, model_loading, models, output_paths, torch_checkpoint
from jaxkd import step as step_lib
from jaxkd.data import datasets, device_augment, tfds_source
from jaxkd.methods import base

flags.DEFINE_string("checkpoint", None, "jaxkd export, run workdir or PyTorch state_dict.")
flags.DEFINE_string("model", "", "Zoo model name; '' = the one the export names.")
flags.DEFINE_string("dataset", "cifar100", "Data set to evaluate on.")
flags.DEFINE_string("data_dir", "", "TFDS data_dir ('' = the TFDS default).")
flags.DEFINE_enum("split", "test", ["test", "train"], "Split to score.")
flags.DEFINE_list("mean", [], "Per-channel input mean the model was trained with.")
flags.DEFINE_list("std", [], "Per-channel input std the model was trained with.")
flags.DEFINE_integer("batch_size", 512, "Evaluation batch (a multiple of the device count).")
flags.DEFINE_string("output", "", "Write the result as JSON here.")
flags.DEFINE_bool("overwrite", False, "Write --output even over a model file or a run's file.")
flags.mark_flag_as_required("checkpoint")


def evaluate_checkpoint(checkpoint_path: str, *, model: str = "", dataset: str = "cifar100",
                        data_dir: str = "", split: str = "test",
                        mean: Sequence[float] = (), std: Sequence[float] = (),
                        batch_size: int = 512) -> dict[str, Any]:
  """{'accuracy', 'top5_accuracy', 'loss', 'count', ...} of the checkpoint on the split."""
  source = datasets.dataset_source(dataset)
  info = data.dataset_info(dataset)
  if not model:
    if torch_checkpoint.is_torch_checkpoint(checkpoint_path):
      raise ValueError(f"'{checkpoint_path}' is a PyTorch state_dict: give its architecture "
                       f"with --model (one of: {', '.join(models.model_names())})")
    model = checkpoint.read_description(checkpoint_path)["model"]
  if bool(mean) != bool(std):
    raise ValueError("give both --mean and --std (the normalisation the model was trained "
                     "with), or neither")
  mesh = step_lib.create_mesh()
  if batch_size <= 0 or batch_size % jax.device_count():
    raise ValueError(f"--batch_size={batch_size} must be a positive multiple of the "
                     f"{jax.device_count()} devices")
  module = models.create_model(model, info.num_classes)
  module, params, batch_stats, description = model_loading.load_model(
      module, model, checkpoint_path, info, mesh, jax.random.key(0),
      normalization={"input_mean": list(mean), "input_std": list(std)} if mean else None,
      role="model")
  builder = tfds_source.prepared_builder(source, data_dir)
  images, labels = tfds_source.load_split_arrays(
      builder, source.eval_split if split == "test" else source.train_split)
  eval_step = step_lib.make_eval_step(
      lambda p, s, x: base.apply_model(module, p, s, x, train=False)[0][1], mesh)
  normalize = jax.jit(lambda x: device_augment.normalize(x, info.mean, info.std))
  sharding = step_lib.batch_sharding(mesh)

  def batches():
    for start in range(0, len(labels), batch_size):
      chunk = slice(start, start + batch_size)
      padding = batch_size - len(labels[chunk])
      batch = {"image": np.pad(images[chunk], ((0, padding), (0, 0), (0, 0), (0, 0))),
               "label": np.pad(labels[chunk], (0, padding)),
               "mask": np.arange(batch_size) < batch_size - padding}
      batch = {k: jax.device_put(v, sharding) for k, v in batch.items()}
      batch["image"] = normalize(batch["image"])
      yield batch

  result = step_lib.evaluate(eval_step, params, batch_stats, batches())
  result["count"] = int(result["count"])
  return {"checkpoint": checkpoint_path, "model": model, "dataset": dataset, "split": split,
          "batches": math.ceil(len(labels) / batch_size), **result,
          **model_loading.input_normalization(description, info)}


def write_result(result: dict[str, Any], output: str) -> None:
  """Writes `result` as JSON to `output` (checked beforehand by `output_paths.check_output`)."""
  with output_paths.writing(output, "--output"), open(output, "w") as f:
    json.dump(result, f, indent=2)


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  values = flags.FLAGS
  try:
    if values.output:
      output_paths.check_output(values.output, "--output", values.overwrite,
                                output_paths.Kind.FILE)
    result = evaluate_checkpoint(
        values.checkpoint, model=values.model, dataset=values.dataset,
        data_dir=values.data_dir, split=values.split,
        mean=[float(v) for v in values.mean], std=[float(v) for v in values.std],
        batch_size=values.batch_size)
    print(f"{result['model']} on {result['dataset']} {result['split']}: top-1 "
          f"{result['accuracy']:.4f}, top-5 {result['top5_accuracy']:.4f} over "
          f"{result['count']} examples")
    if values.output:
      write_result(result, values.output)
  except (ValueError, FileNotFoundError, RuntimeError) as error:
    sys.exit(f"jaxkd.evaluate: {error}")


if __name__ == "__main__":
  app.run(main)
