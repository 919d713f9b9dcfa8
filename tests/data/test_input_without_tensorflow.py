"""The device path on a machine without TensorFlow (as GPU machines often are).

A subprocess runs Python with `-S` on a copy of site-packages (symlinks) that lacks every
TensorFlow package, so TFDS sees TF as not installed. It reads the digits prepared here (with
TF) through `tfds.data_source` + Pillow and must produce the very batches of this process.
"""

import pathlib
import subprocess
import sys
import textwrap

import jax
import numpy as np

import jaxkd
import jaxkd.data
from tests.data.input_test_config import data_mesh, make_config

_TENSORFLOW_ONLY = ("tensorflow", "tensorflow_cpu", "tensorflow_io", "tensorboard", "keras",
                    "tf_keras")

_CHILD = textwrap.dedent("""
    import sys
    import numpy as np
    import jax
    import ml_collections
    import jaxkd.data
    config = ml_collections.ConfigDict(dict(
        dataset="digits", data_dir=sys.argv[1], batch_size=64, eval_batch_size=128, seed=0,
        input_path="auto", image_size=224))
    data = jaxkd.data.create_input(config, jax.sharding.Mesh(np.array(jax.devices()), ("data",)))
    batch = next(data.train_batches(5))
    assert "tensorflow" not in sys.modules, "TensorFlow was imported"
    np.savez(sys.argv[2], image=np.asarray(batch["image"]), label=np.asarray(batch["label"]),
             path=data.path, num_devices=len(batch["image"].sharding.device_set))
""")


def site_packages_without_tensorflow(target: pathlib.Path) -> None:
  site_packages = pathlib.Path(np.__file__).parents[1]
  for entry in site_packages.iterdir():
    name = entry.name.split("-")[0].lower()
    if name not in _TENSORFLOW_ONLY:
      (target / entry.name).symlink_to(entry)


def test_device_path_without_tensorflow_matches(tmp_path):
  data_dir = tmp_path / "tfds"
  data = jaxkd.data.create_input(make_config("digits", str(data_dir)), data_mesh())
  expected = next(data.train_batches(5))
  site = tmp_path.joinpath("site").resolve()
  site.mkdir()
  site_packages_without_tensorflow(site)
  repository = pathlib.Path(jaxkd.__file__).parents[1]
  output = tmp_path / "batch.npz"
  environment = {"PYTHONPATH": f"{site}:{repository}", "JAX_PLATFORMS": "cpu",
                 "XLA_FLAGS": "--xla_force_host_platform_device_count=8",
                 "HOME": str(tmp_path)}
  result = subprocess.run([sys.executable, "-S", "-c", _CHILD, str(data_dir), str(output)],
                          env=environment, capture_output=True, text=True, timeout=120)
  assert result.returncode == 0, result.stderr[-3000:]
  child = np.load(output)
  assert str(child["path"]) == "device" and int(child["num_devices"]) == 8
  np.testing.assert_array_equal(child["label"], np.asarray(expected["label"]))
  np.testing.assert_array_equal(child["image"], np.asarray(expected["image"]))
  assert jax.device_count() == 8
