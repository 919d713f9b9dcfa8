"""Registry of distillation methods: one module per method, found by name."""

import ml_collections

from jaxkd.methods import base
from jaxkd.methods.atsc import ATSC
from jaxkd.methods.ce import CrossEntropy
from jaxkd.methods.dkd import DecoupledKD
from jaxkd.methods.dtd import DynamicTemperature
from jaxkd.methods.generous import GenerousTeacher
from jaxkd.methods.ka import KnowledgeAdjustment
from jaxkd.methods.kd import KnowledgeDistillation
from jaxkd.methods.lskd import LogitStandardizedKD
from jaxkd.methods.simkd import SimKD
from jaxkd.methods.student_friendly import StudentFriendlyKD
from jaxkd.registry import Registry

METHODS: Registry[type[base.Method]] = Registry("method")
for _method in (CrossEntropy, KnowledgeDistillation, DecoupledKD, SimKD, ATSC,
                KnowledgeAdjustment, DynamicTemperature, LogitStandardizedKD, StudentFriendlyKD,
                GenerousTeacher):
  METHODS.register(_method.name)(_method)


def create_method(config: ml_collections.ConfigDict) -> base.Method:
  """The method named by `config.method`, with its section `config.<method>` over its defaults."""
  return METHODS.get(config.method)(config)


def default_config(name: str) -> ml_collections.ConfigDict:
  """The hyperparameter section of method `name`, for config files to start from."""
  return METHODS.get(name).default_config()
