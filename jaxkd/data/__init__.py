"""Input pipelines: TFDS data sets as sharded global batches.

    info = jaxkd.data.dataset_info("cifar100")          # classes, shapes, mean/std, ...
    data = jaxkd.data.create_input(config, mesh)         # config.dataset, batch_size, ...
    for batch in data.train_batches(start_step): ...     # {'image', 'label'}, sharded P('data')
    for batch in data.eval_batches("test"): ...          # {'image', 'label', 'mask'}
                                                         # ('validation' when held out)

Data sets: cifar100, cifar10, fashion_mnist, imagenet2012 (standard TFDS builders, prepared
with `tfds build`; cifar100/cifar10 also offline from the official binary archive with
`python -m jaxkd.data.prepare`, or by the run itself when the archive is in
$JAXKD_MANUAL_DIR), digits (scikit-learn, built on first use) and cifar10_jpeg (the real
CIFAR-10 JPEGs, built on first use from cifar10_jpeg.tar.gz in $JAXKD_MANUAL_DIR or
<repository>/../shared/data). See `input` for the two input paths and the batch contract.
Importing this package imports no TensorFlow.
"""

from jaxkd.data.datasets import DatasetInfo
from jaxkd.data.datasets import dataset_info
from jaxkd.data.datasets import dataset_names
from jaxkd.data.input import INPUT_PATHS
from jaxkd.data.input_base import Input
from jaxkd.data.input_base import TEST_SPLIT
from jaxkd.data.input_base import VALIDATION_SPLIT
from jaxkd.data.input import check_batch_size
from jaxkd.data.input import create_input
from jaxkd.data.tfds_source import MissingDatasetError

__all__ = ["DatasetInfo", "INPUT_PATHS", "Input", "MissingDatasetError", "TEST_SPLIT",
           "VALIDATION_SPLIT", "check_batch_size", "create_input", "dataset_info",
           "dataset_names"]
