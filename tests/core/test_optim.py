"""Optimizers match PyTorch SGD; schedules decay where the recipe says."""

import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxkd import config_schema, optim


def test_step_schedule_decays_after_each_milestone_epoch():
  opt = config_schema.sgd_config(learning_rate=0.05, decay_epochs=(150, 180, 210))
  schedule = optim.learning_rate_schedule(opt, steps_per_epoch=10, num_epochs=240)
  # Epoch e (0-based) covers steps 10e .. 10e+9; epochs 0..149 at 0.05, 150..179 at 0.005 ...
  assert schedule(1499) == pytest.approx(0.05)
  assert schedule(1500) == pytest.approx(0.005)
  assert schedule(1799) == pytest.approx(0.005)
  assert schedule(1800) == pytest.approx(0.0005)
  assert schedule(2100) == pytest.approx(0.00005)


def test_warmup_then_cosine():
  opt = config_schema.sgd_config(learning_rate=1.0)
  opt.schedule, opt.warmup_epochs = "cosine", 1
  schedule = optim.learning_rate_schedule(opt, steps_per_epoch=4, num_epochs=3)
  np.testing.assert_allclose([schedule(s) for s in (0, 2, 4, 6, 12)],
                             [0.0, 0.5, 1.0, 0.5 * (1 + np.cos(np.pi * 2 / 8)), 0.0], atol=1e-6)


def test_sgd_matches_pytorch_update_rule():
  """PyTorch: g ← g + wd·w; b ← m·b + g; w ← w − lr·b (b = g at the first step)."""
  opt = config_schema.sgd_config(learning_rate=0.1, weight_decay=0.01)
  tx = optim.create_optimizer(opt, steps_per_epoch=100, num_epochs=1)
  w = jnp.array([1.0, -2.0])
  state = tx.init(w)
  w_ref, buf = np.array([1.0, -2.0]), None
  for grad in (np.array([0.5, 0.25]), np.array([-1.0, 2.0]), np.array([0.1, 0.1])):
    updates, state = tx.update(jnp.asarray(grad), state, w)
    w = optax.apply_updates(w, updates)
    g = grad + 0.01 * w_ref
    buf = g if buf is None else 0.9 * buf + g
    w_ref = w_ref - 0.1 * buf
  np.testing.assert_allclose(w, w_ref, rtol=1e-6)


def test_unknown_schedule_and_optimizer_are_named():
  opt = config_schema.sgd_config()
  opt.schedule = "linear"
  with pytest.raises(ValueError, match="optimizer.schedule must be one of step, cosine, constant, got 'linear'"):
    optim.learning_rate_schedule(opt, 10, 10)
  opt = config_schema.sgd_config()
  opt.name = "lamb"
  with pytest.raises(ValueError, match="optimizer.name must be one of sgd, adamw, got 'lamb'"):
    optim.create_optimizer(opt, 10, 10)
