"""The teacher target of KD and DKD, and the transforms that rewrite it (docs/methods.md §11).

A `TeacherTarget` is what a logit loss (KD's softened KL, DKD's decoupled KL) compares the
student with: the teacher logits (or a ready target distribution), the student logits as
the loss sees them, per-sample temperatures and the factor that replaces T². A transform
rewrites it; the file that defines one registers it with `register_transform` (`ka` in
ka.py, `dtd` in dtd.py, `ls` in lskd.py), and a KD or DKD section applies them left to
right as its `transforms` setting names them ('ka,dtd'). Every KD and DKD section holds the
settings of every transform, so any combination is a config change. Order matters and
follows TextBrewer: KA before DTD, so that DTD's weights see the shifted teacher.
"""

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections

from jaxkd import losses, precision
from jaxkd.methods import base
from jaxkd.ranges import Range
from jaxkd.registry import Registry


@dataclasses.dataclass(frozen=True)
class TeacherTarget:
  """The teacher side of a logit loss, and the student logits it is compared with.

  `target_log_probs`, when set, replaces σ(teacher_logits / teacher_temperature);
  `sample_weight`, when set, multiplies each sample's distillation term.
  """
  teacher_logits: jax.Array
  student_logits: jax.Array
  temperature: jax.Array  # Student temperature: scalar or (B,).
  teacher_temperature: jax.Array
  t2_factor: jax.Array
  target_log_probs: jax.Array | None = None
  sample_weight: jax.Array | None = None  # (B,)


@dataclasses.dataclass(frozen=True)
class Transform:
  """A rewrite of the teacher target, and the settings it reads from its method's section.

  `apply(target, labels, hparams) -> (target, metrics)`; `defaults`: its settings and their
  defaults; `ranges`: the valid range of each numeric one; `check(hparams, section, names,
  accepts_distribution)`, if any, raises ValueError, saying what to fix, when the settings
  cannot work (`names`: the transforms the section applies; `accepts_distribution`: whether
  the loss can take a target distribution instead of teacher logits); `traced`: the numeric
  settings `apply` only does arithmetic with (`Method.traced_settings`).
  """
  apply: Callable[[TeacherTarget, jax.Array, ml_collections.ConfigDict],
                  tuple[TeacherTarget, base.Metrics]]
  defaults: dict[str, Any] = dataclasses.field(default_factory=dict)
  ranges: dict[str, Range] = dataclasses.field(default_factory=dict)
  check: Callable[[ml_collections.ConfigDict, str, tuple[str, ...], bool], None] | None = None
  traced: tuple[str, ...] = ()


TRANSFORMS: Registry[Transform] = Registry("teacher transform")


def register_transform(name: str, transform: Transform) -> None:
  """Makes `transform` the one that `transforms='<name>'` applies."""
  TRANSFORMS.register(name)(transform)


def transform_defaults() -> dict[str, Any]:
  """The settings of every transform, present in each KD and DKD config section."""
  defaults = {"transforms": ""}  # Comma-separated, applied left to right: e.g. 'ka,dtd'.
  for name in TRANSFORMS.names():
    defaults.update(TRANSFORMS.get(name).defaults)
  return defaults


def transform_ranges() -> dict[str, Range]:
  """The valid range of each numeric transform setting (`transform_defaults`)."""
  return {field: valid for name in TRANSFORMS.names()
          for field, valid in TRANSFORMS.get(name).ranges.items()}


def transform_traced() -> tuple[str, ...]:
  """The transform settings a sweep may trace (each transform's `traced`)."""
  return tuple(field for name in TRANSFORMS.names() for field in TRANSFORMS.get(name).traced)


def parse_transforms(spec: str) -> tuple[str, ...]:
  names = tuple(part.strip() for part in spec.split(",") if part.strip())
  unknown = [n for n in names if n not in TRANSFORMS]
  if unknown:
    raise ValueError(f"unknown teacher transform(s) {unknown}; "
                     f"valid: {', '.join(TRANSFORMS.names())}")
  return names


def validate_transforms(hp: ml_collections.ConfigDict, section: str, accepts_distribution: bool):
  """Raises ValueError when a method's transform settings cannot work."""
  names = parse_transforms(hp.transforms)
  for name in TRANSFORMS.names():
    check = TRANSFORMS.get(name).check
    if check is not None:
      check(hp, section, names, accepts_distribution)


def build_target(teacher_logits: jax.Array, student_logits: jax.Array, labels: jax.Array,
                 hp: ml_collections.ConfigDict) -> tuple[TeacherTarget, base.Metrics]:
  """The teacher target at `hp.temperature`, after `hp.transforms` in order.

  Logits are taken in full precision (`jaxkd.precision`); the teacher's carry no gradient.
  """
  temperature = jnp.asarray(hp.temperature, precision.full_precision())
  target = TeacherTarget(
      teacher_logits=jax.lax.stop_gradient(teacher_logits.astype(precision.full_precision())),
      student_logits=student_logits.astype(precision.full_precision()),
      temperature=temperature, teacher_temperature=temperature, t2_factor=temperature**2)
  metrics = {}
  for name in parse_transforms(hp.transforms):
    target, new_metrics = TRANSFORMS.get(name).apply(target, labels, hp)
    metrics.update(new_metrics)
  return target, metrics


def weighted(per_sample: jax.Array, target: TeacherTarget) -> jax.Array:
  """`per_sample` (B,) times the target's sample weight, if it has one."""
  return per_sample if target.sample_weight is None else per_sample * target.sample_weight


def kd_term(target: TeacherTarget) -> jax.Array:
  """Per-sample weight_i · t2_factor_i · KL(target_i ‖ σ(z_s,i / T_s,i)), shape (B,)."""
  if target.target_log_probs is not None:
    kl = losses.kl_to_target(target.target_log_probs, target.student_logits,
                             target.temperature, t2_factor=target.t2_factor)
  else:
    kl = losses.softened_kl(target.teacher_logits, target.student_logits, target.temperature,
                            teacher_temperature=target.teacher_temperature,
                            t2_factor=target.t2_factor)
  return weighted(kl, target)


def decoupled_terms(target: TeacherTarget, labels: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Per-sample (TCKD, NCKD) of DKD on the target, each weighted like `kd_term`."""
  tckd, nckd = losses.decoupled_kl(
      target.teacher_logits, target.student_logits, labels, target.temperature,
      teacher_temperature=target.teacher_temperature, t2_factor=target.t2_factor)
  return weighted(tckd, target), weighted(nckd, target)
