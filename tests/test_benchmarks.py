"""The benchmark harness: it times the real step without recompiling, and its PyTorch
reference has jaxkd's architectures (parameter counts) and losses (values)."""

import importlib.util
import tempfile

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from benchmarks import common
from benchmarks import flops
from benchmarks import step as step_benchmark
from jaxkd import data, losses, models
from jaxkd import step as step_lib

HAS_TORCH = importlib.util.find_spec("torch") is not None
REFERENCE_MODELS = ("resnet8x4", "resnet32x4", "resnet56", "resnet20", "wrn_40_2", "wrn_16_2")


@pytest.mark.slow
def test_step_harness_times_ce_on_resnet8_without_recompiling(tmp_path, capsys):
  results_path = tmp_path / "RESULTS.md"
  argv = ["--method", "ce", "--student", "resnet8", "--batch", "8", "--rounds", "1",
          "--steps", "1", "--write-results", "--results-path", str(results_path)]
  if HAS_TORCH:
    argv += ["--compare", "torch", "--threads", "1"]
  (result,) = step_benchmark.run_from_args(step_benchmark.parse_args(argv), argv)
  assert result.error is None
  assert result.jax_images_per_s > 0
  assert result.recompilations == 0
  assert result.compile_seconds > 0
  assert np.isfinite(result.final_loss)
  if HAS_TORCH:
    assert result.torch_images_per_s > 0
    assert result.ratio == pytest.approx(result.jax_images_per_s / result.torch_images_per_s)
  text = results_path.read_text()
  assert text.startswith(common.RESULTS_TITLE)
  assert "<!-- begin benchmarks.step.cpu -->" in text
  assert "| ce | resnet8 | 8 | fp32 | cpu | 1 |" in text
  assert "python -m benchmarks.step --method ce --student resnet8" in text
  assert "| ce | resnet8 | 8 | fp32 | cpu | 1 |" in capsys.readouterr().out
  row = next(line for line in text.splitlines() if line.startswith("| ce | resnet8 |"))
  tflops, mfu = (cell.strip() for cell in row.strip("|").split("|")[-2:])
  assert float(tflops) > 0 and mfu.endswith("%") and 0 < float(mfu[:-1]) < 100
  assert "MFU against the measured float32 matrix-product rate" in text


@pytest.mark.slow
def test_distillation_step_loads_exported_random_teacher_and_compiles_once():
  case = step_benchmark.StepCase("kd", "cnn_large", "cnn_small", batch_size=8, dataset="digits")
  (result,) = step_benchmark.run_cases([case], common.Repetitions(1, 2, 1), log=lambda _: None)
  assert result.error is None
  assert result.recompilations == 0
  assert result.jax_images_per_s > 0
  assert result.torch_images_per_s is None  # No PyTorch reference was asked for.


@pytest.mark.slow
def _measured_digits_kd(**fields):
  """(case, result) of kd cnn_large → cnn_small on digits at batch 8, which must measure
  without error or recompilation."""
  case = step_benchmark.StepCase("kd", "cnn_large", "cnn_small", batch_size=8, dataset="digits",
                                 **fields)
  (result,) = step_benchmark.run_cases([case], common.Repetitions(1, 2, 1), log=lambda _: None)
  assert result.error is None and result.recompilations == 0
  return case, result


def test_replicated_step_counts_every_replica_and_compiles_once():
  case, result = _measured_digits_kd(replicas=3)
  assert "× 3 replicas" in case.label()
  row = step_benchmark.results_table([result], None)[-1]
  total, per_replica = (float(cell) for cell in row.strip("|").split("|")[7:9])
  assert total == pytest.approx(3 * per_replica, rel=1e-2)
  with pytest.raises(ValueError, match="--replicas takes positive integers"):
    step_benchmark.positive_counts("1,0", "--replicas")


@pytest.mark.slow
def test_several_steps_per_call_train_as_many_steps_and_compile_once():
  # With replicas: the scanned step once gave its state back with other shardings than it
  # took, and compiled again on its second call.
  case, _ = _measured_digits_kd(replicas=2, steps_per_call=4)
  assert "× 2 replicas, 4 steps per call" in case.label()
  with tempfile.TemporaryDirectory() as root:
    teacher = step_benchmark.TeacherExports(root).path("cnn_large", data.dataset_info("digits"))
    config = step_benchmark.case_config(case, teacher)
    jax_step = step_benchmark.JaxTrainStep(config, data.dataset_info("digits"),
                                           step_lib.create_mesh(num_replicas=2), replicas=2,
                                           steps_per_call=4)
    jax_step.run(2)
    np.testing.assert_array_equal(jax_step.state.step, [8, 8])
    assert jax_step.cache_size() == 1


def test_training_flops_count_student_three_times_and_a_frozen_teacher_once():
  student = flops.forward_flops("resnet20", "cifar100")
  teacher = flops.forward_flops("resnet56", "cifar100")
  # Multiply-adds summed by hand from the architectures (convolutions + classifier):
  # resnet20 40,818,944 and resnet56 125,753,600 (2 FLOPs each).
  assert student == 2 * 40_818_944
  assert teacher == 2 * 125_753_600
  assert flops.training_flops_per_image("resnet20", "resnet56", False, "cifar100") == (
      pytest.approx(3 * student + teacher))
  assert flops.training_flops_per_image("resnet20", "resnet56", True, "cifar100") == (
      pytest.approx(3 * student + 3 * teacher))
  assert flops.training_flops_per_image("resnet20", None, False, "cifar100") == (
      pytest.approx(3 * student))


def test_matmul_rate_is_positive_and_below_a_cpu_bound():
  rate = flops.measure_matmul_flops_per_s(jnp.float32, size=128, repeats=2, rounds=2)
  assert 1e6 < rate < 1e13


def test_precision_and_conv_lists_are_checked():
  assert common.comma_list("fp32, bf16", step_benchmark.PRECISIONS, "--precision") == [
      "fp32", "bf16"]
  with pytest.raises(SystemExit, match="--conv-impl: unknown value 'winograd'"):
    common.comma_list("xla,winograd", ("auto", "xla", "cpu"), "--conv-impl")


def test_compile_counter_counts_each_new_shape_once():
  double = jax.jit(lambda x: 2 * x)
  three, four = np.ones(3, np.float32), np.ones(4, np.float32)
  with common.CompileCounter() as first:
    double(three)
  with common.CompileCounter() as same_shape:
    double(three)
  with common.CompileCounter() as new_shape:
    double(four)
  assert (first.compilations, same_shape.compilations, new_shape.compilations) == (1, 0, 1)
  assert first.seconds > 0 and same_shape.seconds == 0


def test_results_section_is_replaced_and_other_sections_kept(tmp_path):
  path = str(tmp_path / "RESULTS.md")
  common.write_results_section("a", ["first a"], path)
  common.write_results_section("b", ["only b"], path)
  common.write_results_section("a", ["second a"], path)
  text = open(path).read()
  assert "second a" in text and "only b" in text and "first a" not in text
  assert text.index("second a") < text.index("only b")
  assert text.count("<!-- begin a -->") == 1


def test_method_and_pair_selection():
  names = step_benchmark.method_names("all")
  assert names[:3] == ["ce", "kd", "dkd"] and len(set(names)) == len(names)
  assert step_benchmark.pairs("all", "x", "y") == list(step_benchmark.PAIRS)
  assert step_benchmark.pairs(None, "resnet56", "resnet20") == [("resnet56", "resnet20")]
  assert step_benchmark.pairs("a:b,c:d", "x", "y") == [("a", "b"), ("c", "d")]
  with pytest.raises(ValueError, match="unknown method"):
    step_benchmark.method_names("ce,not_a_method")


def _jax_parameter_count(name: str) -> int:
  module = models.create_model(name, 100)
  variables = jax.eval_shape(
      lambda: module.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)), train=False))
  return sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(variables["params"]))


@pytest.mark.skipif(not HAS_TORCH, reason="PyTorch is a benchmark-only dependency")
@pytest.mark.parametrize("name", REFERENCE_MODELS)
def test_torch_reference_has_jaxkd_parameter_count(name):
  from benchmarks import torch_reference
  assert torch_reference.parameter_count(torch_reference.create_model(name, 100)) == (
      _jax_parameter_count(name))


@pytest.mark.skipif(not HAS_TORCH, reason="PyTorch is a benchmark-only dependency")
def test_torch_reference_losses_equal_jaxkd_losses():
  import torch
  from benchmarks import torch_reference
  rng = np.random.default_rng(0)
  student = rng.normal(0, 3, (16, 10)).astype(np.float32)
  teacher = rng.normal(0, 3, (16, 10)).astype(np.float32)
  labels = rng.integers(0, 10, 16)
  t_student, t_teacher, t_labels = map(torch.from_numpy, (student, teacher, labels))
  kd = torch_reference.kd_loss(t_student, t_teacher, 4.0)
  np.testing.assert_allclose(kd.item(), float(jnp.mean(losses.softened_kl(teacher, student, 4.0))),
                             rtol=1e-5)
  tckd, nckd = torch_reference.dkd_terms(t_student, t_teacher, t_labels, 4.0)
  expected_tckd, expected_nckd = losses.decoupled_kl(teacher, student, labels, 4.0)
  np.testing.assert_allclose(tckd.item(), float(jnp.mean(expected_tckd)), rtol=1e-5)
  np.testing.assert_allclose(nckd.item(), float(jnp.mean(expected_nckd)), rtol=1e-5)
  hparams = {"alpha": 1.0, "beta": 8.0, "temperature": 4.0, "ce_weight": 1.0, "warmup_epochs": 20}
  total = torch_reference.method_loss("dkd", hparams, t_student, t_teacher, t_labels, epoch=5)
  ce = float(jnp.mean(losses.cross_entropy(student, labels)))
  expected = ce + 5 / 20 * (float(jnp.mean(expected_tckd)) + 8 * float(jnp.mean(expected_nckd)))
  np.testing.assert_allclose(total.item(), expected, rtol=1e-5)


@pytest.mark.slow
def test_conv_benchmark_writes_layer_and_model_tables(tmp_path):
  from benchmarks import conv_cpu
  path = tmp_path / "RESULTS.md"
  argv = ["--layers", "1x1 16x16 96->24 s1", "--models", "resnet8", "--rounds", "1",
          "--write-results", "--results-path", str(path)]
  if HAS_TORCH:
    argv += ["--compare", "torch"]
  conv_cpu.main(argv)
  text = path.read_text()
  pieces = [line for line in text.splitlines() if line.startswith("| 1x1 16x16 96->24 s1 |")]
  assert [line.split("|")[2].strip() for line in pieces] == [
      "forward", "input_grad", "weight_grad", "value_and_grad"]
  assert all(len(line.split("|")) == (11 if HAS_TORCH else 7) for line in pieces)
  assert "| resnet8 |" in text


def test_conv_layer_flops_count_multiply_adds_twice():
  from benchmarks import conv_cpu
  # 64 images, 16×16 outputs, 24 output channels, 96 inputs: 2 FLOPs per multiply-add.
  assert conv_cpu.layer_flops(conv_cpu.LAYERS["1x1 16x16 96->24 s1"], "forward") == (
      2 * 64 * 16 * 16 * 24 * 96)
  # Stride 2 halves each side; the grouped kernel sees in/groups channels.
  assert conv_cpu.layer_flops((64, 16, 60, 60, 3, 2, 1, 3), "weight_grad") == (
      2 * 64 * 8 * 8 * 60 * 9 * 20)
  assert conv_cpu.layer_flops((1, 4, 2, 2, 1, 1, 0, 1), "value_and_grad") == 3 * 2 * 16 * 4


@pytest.mark.slow
def test_compile_time_loads_the_warm_step_from_the_cache(tmp_path):
  """The cold process compiles the step, the warm one loads it: nothing left to compile."""
  from benchmarks import compile_time  # pylint: disable=g-import-not-at-top
  cold, warm = compile_time.cold_and_warm("kd", "resnet8", "resnet8", 8, "cifar100")
  assert cold.compiled >= 1 and cold.loaded == 0 and cold.compile_s > 1.0
  assert warm.loaded >= 1 and warm.compile_s < cold.compile_s
  row = compile_time.table_row("kd", "resnet8", "resnet8", cold, warm)
  assert row[:2] == ["kd", "resnet8 → resnet8"]
  assert row[-1] == f"{warm.loaded} of {warm.loaded + warm.compiled}"
