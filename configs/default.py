"""Defaults shared by every config: CE training of resnet8x4 on CIFAR-100 (methods.md §10).

    python -m jaxkd.main --config=configs/default.py --workdir=/tmp/jaxkd/default
"""

from jaxkd import config_schema


def get_config():
  return config_schema.base_config()
