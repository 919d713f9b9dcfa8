"""The fields every jaxkd config has, with their defaults.

Every config file under `configs/` starts from `base_config()` (one run) or
`pipeline_config()` (several runs chained, e.g. teacher ▶ student), so that the same
overrides drive any experiment:

    --config.dataset  --config.data_dir  --config.batch_size  --config.num_epochs
    --config.max_steps  --config.seed  --config.teacher_checkpoint

Method hyperparameters live in a section named after the method (`config.kd`,
`config.dkd`, ...); `jaxkd.methods` fills a missing section with the method's defaults.
"""

import ml_collections

# Fields that a pipeline shares with each of its stages, by reference.
SHARED_FIELDS = ("dataset", "data_dir", "batch_size", "eval_batch_size", "num_epochs",
                 "max_steps", "seed", "num_replicas", "seeds", "input_path", "half_precision",
                 "conv_impl", "validation_examples", "validation_seed",
                 "train_examples_per_class", "train_subset_seed")


def sgd_config(learning_rate: float = 0.05, weight_decay: float = 5e-4,
               decay_epochs: tuple[int, ...] = (150, 180, 210)) -> ml_collections.ConfigDict:
  """SGD with momentum, coupled weight decay and a step-decay schedule (the CIFAR recipe)."""
  return ml_collections.ConfigDict({
      "name": "sgd",
      "learning_rate": learning_rate,
      "momentum": 0.9,
      "nesterov": False,
      "weight_decay": weight_decay,
      # 'step': ×decay_factor once the epoch passes each of decay_epochs; 'cosine'; 'constant'.
      "schedule": "step",
      "decay_epochs": decay_epochs,
      "decay_factor": 0.1,
      "warmup_epochs": 0,
  })


def base_config() -> ml_collections.ConfigDict:
  """One training run: defaults of the CIFAR-100 recipe (docs/methods.md §10)."""
  config = ml_collections.ConfigDict()
  config.method = "ce"
  config.dataset = "cifar100"
  config.data_dir = ""  # '' = the TFDS default data dir.
  config.input_path = "auto"  # 'auto' | 'device' (data set kept on device) | 'tfdata'.
  config.image_size = 224  # ImageNet train/eval resolution.

  config.student_model = "resnet8x4"
  # Teachers: model names and checkpoints, comma-separated when there are several.
  # A checkpoint is the workdir of an earlier jaxkd run (its exported model is loaded).
  config.teacher_model = ""
  config.teacher_checkpoint = ""
  # '' = the student starts from scratch; else a jaxkd export/workdir or a PyTorch state_dict
  # (.pth/.pt/.th/.safetensors/.npz) of config.student_model to start from (fine-tuning).
  config.student_checkpoint = ""

  config.batch_size = 64  # Global batch, split over all devices.
  config.eval_batch_size = 256
  config.num_epochs = 240
  config.max_steps = 0  # > 0: stop after this many steps (smoke runs).
  config.seed = 0
  # Several seeds trained together in one compiled step (`jaxkd.replicas`): num_replicas > 1
  # trains seeds seed … seed + num_replicas − 1; seeds='0,3,7' names them. Each replica's
  # results are those of the single run with its seed, in WORKDIR/seed_<s>.
  config.num_replicas = 1
  config.seeds = ""
  # Settings of the method trained together, as replicas: 'kd.temperature=2,4,8' trains three
  # runs (WORKDIR/temperature_<v>); ';' joins settings whose k-th values run together. Only
  # the settings the loss may take traced (`Method.traced_settings`); with seeds, each
  # setting runs with each seed (WORKDIR/temperature_<v>/seed_<s>).
  config.sweep = ""
  # > 0: hold out this many training images (class-balanced, chosen by validation_seed alone)
  # as the 'validation' split; "best" checkpoints are then chosen on it, never on 'test'.
  config.validation_examples = 0
  config.validation_seed = 0
  # > 0: train on this many images of every class (class-balanced, chosen by
  # train_subset_seed alone among those the validation split leaves); 0: all of them.
  config.train_examples_per_class = 0
  config.train_subset_seed = 0

  config.optimizer = sgd_config()  # Student (and the method's extra modules).
  config.teacher_optimizer = sgd_config()  # Used only by methods that train the teacher.

  config.half_precision = False  # bf16 compute, float32 parameters.
  config.conv_impl = "auto"  # 'auto' | 'xla' | 'cpu' | 'per_replica' (jaxkd.models.layers).

  config.log_every_steps = 50
  config.eval_every_epochs = 1
  config.eval_every_steps = 0  # > 0: evaluate every this many steps instead of every epoch.
  config.checkpoint_every_steps = 0  # 0: checkpoint after each evaluation only.
  config.keep_checkpoints = 2  # The last N; the best one is kept apart.
  # 'run': when the workdir holds a run of another config or teacher (fingerprint.json),
  # move it aside (<workdir>.replaced-<time>) and train again instead of stopping.
  config.restart_stages = ""
  return config


def pipeline_config(stages: dict[str, ml_collections.ConfigDict],
                    own_fields: dict[str, tuple[str, ...]] | None = None
                    ) -> ml_collections.ConfigDict:
  """Several runs in order, each in `WORKDIR/<stage name>`, linked by `teacher_checkpoint='@stage'`.

  The shared fields (dataset, batch size, epochs, seed, ...) hold one value for the whole
  pipeline: each stage's field is a reference to the top-level one, so
  `--config.num_epochs=3` (or setting any stage's copy) changes every stage. A stage keeps
  its own value of a shared field only when the config file lists it in `own_fields`
  (e.g. `{'teacher': ('batch_size',)}`); the field is then that stage's alone.
  A non-empty top-level `teacher_checkpoint` replaces the '@stage' references (one
  entry per reference, comma-separated), and the stages it replaces are not run.
  """
  own_fields = own_fields or {}
  unknown = set(own_fields) - set(stages)
  if unknown:
    raise ValueError(f"own_fields names unknown stage(s) {sorted(unknown)}")
  config = ml_collections.ConfigDict()
  for field in SHARED_FIELDS:  # The value of the last stage that shares the field.
    sharing = [stage for name, stage in stages.items() if field not in own_fields.get(name, ())]
    config[field] = (sharing or list(stages.values()))[-1][field]
  config.teacher_checkpoint = ""
  # Stages (comma-separated) to retrain, with the stages that learn from them, when their
  # config or teacher changed since they ran; their old directories are moved aside.
  config.restart_stages = ""
  config.stage_order = tuple(stages)
  config.stages = ml_collections.ConfigDict()
  for name, stage in stages.items():
    for field in SHARED_FIELDS:
      if field not in own_fields.get(name, ()):
        stage[field] = config.get_ref(field)
    config.stages[name] = stage
  return config


def split_names(value: str) -> tuple[str, ...]:
  """'a, b' → ('a', 'b'): the comma-separated lists of a config (teacher models and
  checkpoints, stages to restart, seeds)."""
  return tuple(part.strip() for part in value.split(",") if part.strip())


def is_pipeline(config: ml_collections.ConfigDict) -> bool:
  return "stage_order" in config


def teacher_then_student(teacher: ml_collections.ConfigDict, student: ml_collections.ConfigDict,
                         teacher_own_fields: tuple[str, ...] = ()) -> ml_collections.ConfigDict:
  """A two-stage pipeline: train `teacher` with CE, then distill `student` from it.

  `--config.teacher_checkpoint=DIR` skips the teacher stage and distills from DIR.
  `teacher_own_fields` are shared fields the teacher stage keeps for itself.
  """
  student.teacher_model = teacher.student_model
  student.teacher_checkpoint = "@teacher"
  return pipeline_config({"teacher": teacher, "student": student},
                         own_fields={"teacher": teacher_own_fields})
