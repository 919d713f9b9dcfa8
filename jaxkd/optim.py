"""Optax optimizers and learning-rate schedules built from a config section.

SGD matches PyTorch's `torch.optim.SGD(momentum, weight_decay)`: the decay is coupled
(added to the gradient before momentum), and the learning rate multiplies the
momentum buffer: `optax.chain(add_decayed_weights(wd), sgd(lr_schedule, momentum))`.
Weight decay applies to every parameter, BN and biases included, as in the reference
recipes.
"""

import ml_collections
import optax

SCHEDULES = ("step", "cosine", "constant")


def learning_rate_schedule(opt: ml_collections.ConfigDict, steps_per_epoch: int,
                           num_epochs: int) -> optax.Schedule:
  """The schedule named by `opt.schedule`, with an optional linear warm-up.

  'step': lr · decay_factor^k after the k-th epoch of `decay_epochs` has been completed
  (PyTorch's MultiStepLR stepped once per epoch: epochs 151.. of a 240-epoch CIFAR run
  use 0.1·lr for decay_epochs = (150, 180, 210)).
  """
  if opt.schedule not in SCHEDULES:
    raise ValueError(f"unknown schedule '{opt.schedule}'; valid: {', '.join(SCHEDULES)}")
  total_steps = max(num_epochs * steps_per_epoch, 1)
  warmup_steps = int(opt.warmup_epochs * steps_per_epoch)
  if opt.schedule == "step":
    boundaries = {int(e * steps_per_epoch): opt.decay_factor for e in opt.decay_epochs}
    main = optax.piecewise_constant_schedule(opt.learning_rate, boundaries)
  elif opt.schedule == "cosine":
    main = optax.cosine_decay_schedule(opt.learning_rate, max(total_steps - warmup_steps, 1))
  else:
    main = optax.constant_schedule(opt.learning_rate)
  if warmup_steps == 0:
    return main
  warmup = optax.linear_schedule(0.0, opt.learning_rate, warmup_steps)
  return optax.join_schedules([warmup, main], [warmup_steps])


def create_optimizer(opt: ml_collections.ConfigDict, steps_per_epoch: int,
                     num_epochs: int) -> optax.GradientTransformation:
  """SGD (PyTorch semantics) with coupled weight decay, or AdamW, on the given schedule."""
  schedule = learning_rate_schedule(opt, steps_per_epoch, num_epochs)
  if opt.name == "sgd":
    return optax.chain(optax.add_decayed_weights(opt.weight_decay),
                       optax.sgd(schedule, momentum=opt.momentum, nesterov=opt.nesterov))
  if opt.name == "adamw":
    return optax.adamw(schedule, weight_decay=opt.weight_decay)
  raise ValueError(f"unknown optimizer '{opt.name}'; valid: sgd, adamw")
