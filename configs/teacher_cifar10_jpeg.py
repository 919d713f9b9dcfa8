"""Teacher pre-training on the offline CIFAR-10 JPEGs: resnet32x4, CIFAR recipe.

    python -m jaxkd.main --config=configs/teacher_cifar10_jpeg.py --workdir=$HOME/jaxkd/r32x4_c10j

The data set is built by TFDS from ../shared/data/cifar10_jpeg.tar.gz (or $JAXKD_MANUAL_DIR).
On a 2-core CPU resnet32x4 trains at a few images/s: use a GPU for the full recipe, or
`--config.max_steps=N` for a short run.
"""

from jaxkd import recipes


def get_config():
  return recipes.cifar_run("ce", "resnet32x4", "cifar10_jpeg")
