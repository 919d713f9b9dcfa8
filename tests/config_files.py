"""The repository's config files, loaded the way `python -m jaxkd.main --config=FILE` loads them."""

import os

import ml_collections

from jaxkd import main

CONFIG_DIR = os.path.join(os.path.dirname(__file__), "..", "configs")


def load_config(name: str) -> ml_collections.ConfigDict:
  """`get_config()` of `configs/<name>.py`, or of the file `name` when it ends in '.py'."""
  path = name if name.endswith(".py") else os.path.join(CONFIG_DIR, f"{name}.py")
  return main.load_config_file(path)
