"""Every setting a method lists in `traced_settings` can be traced (a sweep's replicas take
their values traced), and the loss, its metrics and its gradients with a traced value equal
those of a method built with that value."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxkd import methods, run_builder
from jaxkd import step as step_lib
from jaxkd.methods import base

from tests.random_teachers import INFO, export_random_teacher, method_config, random_batch


def _shifted(default: float) -> float:
  """A value other than the default, inside every setting's range (probabilities too)."""
  return 0.75 * default + 0.05


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory):
  return export_random_teacher(tmp_path_factory.mktemp("teacher"))


@pytest.mark.slow  # Compiles each method's loss and gradients three times (about 6 s each).
@pytest.mark.parametrize("name", methods.METHODS.names())
def test_traced_settings_give_the_loss_of_the_method_built_with_them(name, teacher_dir):
  config = method_config(name, teacher_dir)
  method = methods.create_method(config)
  traced = method.traced_settings()
  assert traced, f"{name} lists no traced settings"
  values = {field: _shifted(method.hparams[field]) for field in traced}
  for field, value in values.items():
    config[name][field] = value
  built = methods.create_method(config)
  built.validate()  # The shifted values are valid settings.
  run, _ = run_builder.build_run(config, INFO, steps_per_epoch=10, mesh=step_lib.create_mesh())
  state, batch = jax.device_get(run.state), random_batch(0)
  step_info = base.StepInfo(step=jnp.asarray(25), epoch=jnp.asarray(3), steps_per_epoch=10,
                            method_state=state.method_state)

  def loss_and_grads(chosen: base.Method):
    def loss(params):
      total, (_, metrics) = chosen.loss(run.nets, params, state.batch_stats, batch,
                                        jax.random.key(0), step_info)
      return total, metrics
    return jax.value_and_grad(loss, has_aux=True)(state.params)

  expected, traced_result, untouched = jax.jit(lambda v: (
      loss_and_grads(built), loss_and_grads(method.with_settings(v)), loss_and_grads(method)))(
          {field: jnp.float32(value) for field, value in values.items()})
  assert float(expected[0][0]) != float(untouched[0][0]), "the values change the loss"
  for got, want in zip(jax.tree.leaves(traced_result), jax.tree.leaves(expected)):
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_an_untraced_setting_is_refused(teacher_dir):
  method = methods.create_method(method_config("simkd", teacher_dir))
  with pytest.raises(ValueError, match="simkd.factor cannot be traced"):
    method.with_settings({"factor": jnp.float32(3)})
