"""A model trained on other input statistics sees, through the wrapper, what it saw."""

import jax
import jax.numpy as jnp
import numpy as np

from jaxkd import models
from jaxkd.models import input_renormalization

RUN_MEAN, RUN_STD = (0.5071, 0.4867, 0.4408), (0.2675, 0.2565, 0.2761)
OWN_MEAN, OWN_STD = (0.5070, 0.4865, 0.4409), (0.2673, 0.2564, 0.2761)


def test_renormalization_maps_run_inputs_to_the_models_own():
  scale, shift = input_renormalization.renormalization(RUN_MEAN, RUN_STD, OWN_MEAN, OWN_STD)
  pixels = np.random.default_rng(0).uniform(size=(5, 3))
  run_input = (pixels - RUN_MEAN) / RUN_STD
  np.testing.assert_allclose(run_input * scale + shift, (pixels - OWN_MEAN) / OWN_STD,
                             rtol=0, atol=1e-12)
  assert input_renormalization.renormalization(RUN_MEAN, RUN_STD, RUN_MEAN, RUN_STD) is None


def test_wrapped_model_keeps_its_variables_and_sees_its_own_inputs():
  model = models.create_model("resnet8", 10, conv_impl="xla")
  variables = model.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)), train=False)
  affine = input_renormalization.renormalization(RUN_MEAN, RUN_STD, OWN_MEAN, OWN_STD)
  wrapped = input_renormalization.RenormalizedInput(model, *affine)
  wrapped_variables = wrapped.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)), train=False)
  assert jax.tree.structure(wrapped_variables) == jax.tree.structure(variables)
  pixels = jax.random.uniform(jax.random.key(1), (2, 32, 32, 3))
  run_input = (pixels - jnp.asarray(RUN_MEAN)) / jnp.asarray(RUN_STD)
  own_input = (pixels - jnp.asarray(OWN_MEAN)) / jnp.asarray(OWN_STD)
  _, wrapped_logits = wrapped.apply(variables, run_input, train=False)
  _, own_logits = model.apply(variables, own_input, train=False)
  np.testing.assert_allclose(wrapped_logits, own_logits, rtol=1e-5, atol=1e-5)
  assert wrapped.dtype == model.dtype and wrapped.conv_impl == model.conv_impl
