"""The published PyTorch teachers of ../shared/teachers, imported into jaxkd and evaluated on the
real CIFAR-100 test split, score their published accuracies (the whole chain, exactly)."""

import os
import pathlib

import pytest

from jaxkd import evaluate, import_torch

TEACHERS = pathlib.Path(__file__).resolve().parents[2] / "shared" / "teachers"
# The normalisation these teachers were trained with (../shared/teachers/README.md).
CIFAR100_MEAN, CIFAR100_STD = (0.5070, 0.4865, 0.4409), (0.2673, 0.2564, 0.2761)
PUBLISHED = {"resnet56": 0.7263, "resnet20": 0.6883}


def teacher_file(model: str) -> str:
  path = TEACHERS / f"cifar100_{model}.pth"
  if not path.exists():
    pytest.skip(f"{path} is absent")
  return str(path)


@pytest.mark.slow
def test_imported_teacher_scores_its_published_accuracy(cifar100_data_dir, tmp_path):
  """import_torch (with the teacher's normalisation) ▶ export ▶ evaluate: the export carries
  the normalisation, so the data set's slightly different constants are corrected for."""
  export = str(tmp_path / "resnet56")
  import_torch.import_checkpoint("resnet56", 100, teacher_file("resnet56"), export,
                                 input_mean=CIFAR100_MEAN, input_std=CIFAR100_STD,
                                 dataset="cifar100")
  result = evaluate.evaluate_checkpoint(export, dataset="cifar100", data_dir=cifar100_data_dir)
  assert result["count"] == 10_000 and result["model"] == "resnet56"
  assert result["accuracy"] == pytest.approx(PUBLISHED["resnet56"], abs=5e-4)
  assert result["input_mean"] == list(CIFAR100_MEAN)


@pytest.mark.slow
def test_state_dict_evaluates_directly_with_its_normalisation(cifar100_data_dir):
  result = evaluate.evaluate_checkpoint(
      teacher_file("resnet20"), model="resnet20", dataset="cifar100",
      data_dir=cifar100_data_dir, mean=CIFAR100_MEAN, std=CIFAR100_STD)
  assert result["count"] == 10_000
  assert result["accuracy"] == pytest.approx(PUBLISHED["resnet20"], abs=5e-4)


def test_state_dict_without_a_model_name_is_refused():
  with pytest.raises(ValueError, match="give its architecture with --model"):
    evaluate.evaluate_checkpoint(os.path.join("somewhere", "teacher.pth"), dataset="cifar100")
