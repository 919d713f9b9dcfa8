"""Optax optimizers and learning-rate schedules built from a config section.

SGD matches PyTorch's `torch.optim.SGD(momentum, weight_decay)`: the decay is coupled
(added to the gradient before momentum), and the learning rate multiplies the
momentum buffer: `optax.chain(add_decayed_weights(wd), sgd(lr_schedule, momentum))`.
Weight decay applies to every parameter, BN and biases included, as in the reference
recipes.
"""

from absl import logging
import ml_collections
import optax

from jaxkd.ranges import NON_NEGATIVE, POSITIVE, Range, check_choice, check_ranges

SCHEDULES = ("step", "cosine", "constant")
OPTIMIZERS = ("sgd", "adamw")


def optimizer_ranges(num_epochs: int) -> dict[str, Range]:
  """The valid range of each numeric field of an optimizer section, for a run of `num_epochs`."""
  return {"learning_rate": NON_NEGATIVE,  # 0: weights frozen (fine-tuning checks).
          "weight_decay": NON_NEGATIVE, "momentum": Range(0, 1, high_open=True),
          "decay_factor": Range(0, 1, low_open=True), "decay_epochs": POSITIVE,
          "warmup_epochs": Range(0, num_epochs)}


def validate(opt: ml_collections.ConfigDict, section: str, num_epochs: int) -> None:
  """Raises ValueError with a one-line fix when optimizer section `section` cannot work."""
  missing = [field for field in ("name", "schedule", "nesterov", *optimizer_ranges(num_epochs))
             if field not in opt]
  if missing:
    raise ValueError(f"{section} has no field(s) {', '.join(missing)}: start it from "
                     "jaxkd.config_schema.sgd_config()")
  check_choice(f"{section}.name", opt.name, OPTIMIZERS)
  check_choice(f"{section}.schedule", opt.schedule, SCHEDULES)
  check_ranges(section, opt, optimizer_ranges(num_epochs))


def warn_late_decay(opt: ml_collections.ConfigDict, section: str, num_epochs: int) -> None:
  """Logs a warning when a step schedule decays after the run ends (a short run of a long
  recipe: allowed, but its learning rate never decays there)."""
  late = [epoch for epoch in opt.decay_epochs if epoch > num_epochs]
  if opt.schedule == "step" and late:
    logging.warning("%s.decay_epochs %s lie past num_epochs=%d: the learning rate does not "
                    "decay there.", section, late, num_epochs)


def learning_rate_schedule(opt: ml_collections.ConfigDict, steps_per_epoch: int,
                           num_epochs: int) -> optax.Schedule:
  """The schedule named by `opt.schedule`, with an optional linear warm-up.

  'step': lr · decay_factor^k after the k-th epoch of `decay_epochs` has been completed
  (PyTorch's MultiStepLR stepped once per epoch: epochs 151.. of a 240-epoch CIFAR run
  use 0.1·lr for decay_epochs = (150, 180, 210)).
  """
  check_choice("optimizer.schedule", opt.schedule, SCHEDULES)
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
  raise ValueError(f"optimizer.name must be one of {', '.join(OPTIMIZERS)}, got '{opt.name}'")
