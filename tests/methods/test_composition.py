"""Teacher transforms compose with KD and DKD by config alone: KA ▶ DTD ▶ DKD equals the
same steps written by hand, runs on digits, and every logit-method config validates."""

import os

import jax.numpy as jnp
import numpy as np
import pytest

from jaxkd import config_schema, config_validation, losses, pipeline
from jaxkd.methods import dtd, ka
from tests import numpy_reference as ref
from tests.config_files import CONFIG_DIR, load_config


def hand_composed_dkd(teacher, student, labels, order, epoch):
  """DKD (α 1, β 8, T 4, CE 1, warm-up 20) after KA-PS and DTD-FLSW, in `order`, by hand."""
  teacher, student, labels = map(jnp.asarray, (teacher, student, labels))
  temperature = 4.0
  for name in order:
    if name == "ka":
      teacher, _ = ka.probability_shift(teacher, labels)
    else:
      temperature = dtd.sample_temperatures(
          student, teacher, base_temperature=4.0, beta=1.0, weight_kind="flsw")
  tckd, nckd = losses.decoupled_kl(teacher, student, labels, temperature)  # Factor τ_i².
  ce = jnp.mean(losses.cross_entropy(student, labels))
  return float(ce + min(epoch / 20, 1.0) * (jnp.mean(tckd) + 8.0 * jnp.mean(nckd)))


@pytest.mark.parametrize("order", [("ka", "dtd"), ("dtd", "ka")])
def test_ka_dtd_dkd_from_config_equals_the_hand_composition(make_method, logit_loss_of,
                                                            fixed_logits, order):
  total, metrics = logit_loss_of(make_method("dkd", transforms=",".join(order)), epoch=5)
  teacher, student, labels = fixed_logits.teacher, fixed_logits.student, fixed_logits.labels
  assert total == pytest.approx(hand_composed_dkd(teacher, student, labels, order, 5),
                                rel=1e-6)
  assert {"ka/adjusted_fraction", "dtd/temperature_mean", "loss/tckd"} <= set(metrics)
  if order == ("ka", "dtd"):  # And against NumPy: DTD sees the shifted teacher.
    shifted, _ = ref.probability_shift(teacher, labels)
    tau = ref.dynamic_temperatures(student, shifted, 4.0, 1.0, "flsw", 2.0, 1.0)
    tckd, nckd = ref.decoupled_kl(shifted, student, labels, tau)
    ce = np.mean(ref.cross_entropy(student, labels))
    assert total == pytest.approx(ce + 0.25 * (tckd.mean() + 8.0 * nckd.mean()), rel=1e-5)


def test_order_matters(make_method, logit_loss_of):
  first, _ = logit_loss_of(make_method("dkd", transforms="ka,dtd"))
  second, _ = logit_loss_of(make_method("dkd", transforms="dtd,ka"))
  assert first != second


def test_no_transform_is_plain_kd_and_dkd(make_method, logit_loss_of, fixed_logits):
  teacher, student, labels = fixed_logits.teacher, fixed_logits.student, fixed_logits.labels
  kd, _ = logit_loss_of(make_method("kd"))
  ce = np.mean(ref.cross_entropy(student, labels))
  assert kd == pytest.approx(0.1 * ce + 0.9 * np.mean(ref.softened_kl(teacher, student, 4.0)),
                             rel=1e-5)
  dkd, _ = logit_loss_of(make_method("dkd"), epoch=40)
  tckd, nckd = ref.decoupled_kl(teacher, student, labels, 4.0)
  assert dkd == pytest.approx(ce + tckd.mean() + 8.0 * nckd.mean(), rel=1e-5)


def test_ka_lsr_then_kd_and_ls_then_dtd_compose(make_method, logit_loss_of, fixed_logits):
  teacher, student, labels = fixed_logits.teacher, fixed_logits.student, fixed_logits.labels
  ce = np.mean(ref.cross_entropy(student, labels))
  total, _ = logit_loss_of(make_method("kd", transforms="dtd,ka", ka_variant="lsr"))
  tau = ref.dynamic_temperatures(student, teacher, 4.0, 1.0, "flsw", 2.0, 1.0)
  target = ref.label_smoothing_for_wrong_probs(teacher, labels, tau, 0.9)
  expected = 0.1 * ce + 0.9 * np.mean(ref.kl_to_target(target, student, tau))
  assert total == pytest.approx(expected, rel=1e-5)
  total, _ = logit_loss_of(make_method("kd", transforms="ls,dtd"))
  z_t, z_s = ref.standardize_logits(teacher), ref.standardize_logits(student)
  tau = ref.dynamic_temperatures(z_s, z_t, 4.0, 1.0, "flsw", 2.0, 1.0)
  assert total == pytest.approx(0.1 * ce + 0.9 * np.mean(ref.softened_kl(z_t, z_s, tau)),
                                rel=1e-5)


@pytest.mark.parametrize("name, settings, message", [
    ("kd", {"transforms": "ka,warp"}, "unknown teacher transform"),
    ("dkd", {"transforms": "ka", "ka_variant": "lsr"}, "cannot decouple"),
    ("kd", {"transforms": "ka,dtd", "ka_variant": "lsr"}, "must be the last transform"),
    ("dtd", {"dtd_weight": "focal"}, "dtd_weight must be 'flsw' or 'cwsm'"),
])
def test_bad_compositions_are_named(make_method, name, settings, message):
  with pytest.raises(ValueError, match=message):
    make_method(name, **settings)


@pytest.mark.slow
def test_ka_dtd_dkd_learns_from_config_alone(distill_on_digits, initial_and_final_state,
                                             assert_only_student_side_moved):
  config, summary, workdir = distill_on_digits("dkd", transforms="ka,dtd", warmup_epochs=1)
  assert summary["final_test_accuracy"] > 0.7, summary["final_test_accuracy"]
  assert_only_student_side_moved(*initial_and_final_state(config, workdir))


@pytest.mark.parametrize("name, method", [
    ("ka_cifar100", "ka"), ("dtd_cifar100", "dtd"), ("lskd_cifar100", "lskd"),
    ("student_friendly_cifar100", "student_friendly"), ("generous_teacher_cifar100", "kd")])
def test_configs_validate_on_cifar10_jpeg(name, method):
  config = load_config(name)
  config.dataset = "cifar10_jpeg"
  assert config_schema.is_pipeline(config)
  stages = [pipeline.resolve_stage(config, n, "/w") for n in config.stage_order]
  for stage in stages:
    assert stage.dataset == "cifar10_jpeg"
    config_validation.validate(stage)
  last = stages[-1]
  assert (last.method, last.teacher_model, last.student_model) == (
      method, "resnet32x4", "resnet8x4")
  with open(os.path.join(CONFIG_DIR, f"{name}.py")) as f:
    assert f"python -m jaxkd.main --config=configs/{name}.py" in f.read()
