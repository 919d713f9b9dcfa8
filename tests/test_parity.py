"""jaxkd's train steps equal PyTorch steps written from docs/methods.md (`benchmarks.parity`).

resnet8 ▶ resnet8 (the smallest CIFAR ResNets), batch 8. The fast lane runs KD (frozen
teacher in eval mode) and ATSC (projector, teacher trained in train mode, anchor, head
update, both optimisers) in float64 over 3 steps; DKD and SimKD in float64 and ATSC's first
float32 step are slow (each case compiles its own step: 15-30 s on 2 cores). The command
(`python -m benchmarks.parity`) covers every method in float32 and 20 steps in float64.
"""

import jax
import pytest

pytest.importorskip("torch")
from benchmarks import parity  # pylint: disable=wrong-import-position

TEACHER, STUDENT, BATCH = "resnet8", "resnet8", 8
SLOW_METHODS = ("dkd", "simkd")


def _reports(method: str, dtype: str, steps: int, **options) -> list[parity.StepReport]:
  case = parity.ParityCase(method, TEACHER, STUDENT, BATCH, steps, dtype, **options)
  with jax.enable_x64(dtype == "float64"):
    return parity.run_case(case, log=lambda _: None)


@pytest.mark.parametrize("method", [
    "kd", "atsc", *(pytest.param(method, marks=pytest.mark.slow) for method in SLOW_METHODS)])
def test_float64_steps_equal_pytorch(method):
  reports = _reports(method, "float64", steps=3)
  assert len(reports) == 3
  worst = max(report.worst() for report in reports)
  assert worst <= parity.TOLERANCES["float64"], [parity.format_report(
      parity.ParityCase(method), report) for report in reports]


@pytest.mark.slow
def test_float32_first_step_equals_pytorch():
  """ATSC, the step with every part (the other methods' float32 steps: `benchmarks.parity`)."""
  (report,) = _reports("atsc", "float32", steps=1)
  assert report.worst() <= parity.TOLERANCES["float32"], parity.format_report(
      parity.ParityCase("atsc"), report)
