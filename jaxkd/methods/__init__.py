"""Registry of distillation methods: one module per method, found by name.

A method file registers its class with `@methods.register("<name>")`; every module of this
package is imported below, so a new file needs no other change to become
`--config.method=<name>`.
"""

import importlib
import pkgutil

import ml_collections

from jaxkd.methods import base
from jaxkd.registry import Registry

METHODS: Registry[type[base.Method]] = Registry("method")


def register(name: str):
  """Class decorator: registers the class as method `name` and sets its `name` attribute.

  `--config.method=<name>` then selects it, with its settings in `config.<name>`.
  """

  def add(cls: type[base.Method]) -> type[base.Method]:
    cls.name = name
    return METHODS.register(name)(cls)

  return add


def create_method(config: ml_collections.ConfigDict) -> base.Method:
  """The method named by `config.method`: its section `config.<method>` over its defaults, and
  what it knows of the run (`base.RunInfo`) from the rest of `config`."""
  method = METHODS.get(config.method)
  return method(config.get(method.name), base.RunInfo.from_config(config))


def default_config(name: str) -> ml_collections.ConfigDict:
  """The hyperparameter section of method `name`, for config files to start from."""
  return METHODS.get(name).default_config()


for _module in pkgutil.iter_modules(__path__):
  importlib.import_module(f"{__name__}.{_module.name}")
