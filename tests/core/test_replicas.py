"""Replicated runs: each replica of a run with seeds (0, 1, 2) is the single run with its seed.

Step level: the vmapped step over stacked replicas against the plain step on each seed's own
state and batches, for methods with a frozen teacher (shared by the replicas), a trainable
one (ATSC: replicated) and a learnt simplifier (SKD); settings and layout; pipelines refused.
The runs end to end are in test_replicated_runs.py.
"""


import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec

from jaxkd import config_validation, recipes, replicas, run_builder
from jaxkd import step as step_lib

from tests.random_teachers import INFO, export_random_teacher, method_config, random_batch

SEEDS = (0, 1, 2)
STEPS = 20


def test_seeds_from_config():
  config = recipes.cifar_run("ce", "cnn_small", "digits")
  assert not replicas.is_replicated(config)
  config.seed, config.num_replicas = 5, 3
  assert replicas.replica_seeds(config) == (5, 6, 7)
  config.num_replicas, config.seeds = 1, "3, 0,7"
  assert replicas.is_replicated(config) and replicas.replica_seeds(config) == (3, 0, 7)
  runs = replicas.replica_runs(config)
  assert [(r.seed, r.directory) for r in runs] == [(3, "seed_3"), (0, "seed_0"), (7, "seed_7")]
  single = replicas.replica_config(config, runs[2])
  assert (single.seed, single.num_replicas, single.seeds) == (7, 1, "")
  assert replicas.sweep_values(runs) == {}


def test_a_sweep_runs_each_setting_with_each_seed():
  config = recipes.cifar_run("kd", "cnn_small", "digits")
  config.teacher_model, config.teacher_checkpoint = "cnn_large", "/unused"
  config.sweep = "kd.temperature=2,8; kd.kd_weight=0.9,0.5"
  runs = replicas.replica_runs(config)
  assert replicas.is_replicated(config)
  assert [r.directory for r in runs] == ["temperature_2-kd_weight_0.9",
                                         "temperature_8-kd_weight_0.5"]
  assert replicas.sweep_values(runs) == {"temperature": (2.0, 8.0), "kd_weight": (0.9, 0.5)}
  single = replicas.replica_config(config, runs[1])
  assert (single.kd.temperature, single.kd.kd_weight, single.sweep, single.seed) == (
      8.0, 0.5, "", 0)
  config.seeds = "0,1"
  assert [r.directory for r in replicas.replica_runs(config)] == [
      "temperature_2-kd_weight_0.9/seed_0", "temperature_2-kd_weight_0.9/seed_1",
      "temperature_8-kd_weight_0.5/seed_0", "temperature_8-kd_weight_0.5/seed_1"]
  config_validation.validate(config)


@pytest.mark.parametrize("sweep,message", [
    ("temperature=2,4", "each part is kd.<setting>=v1,v2"),
    ("dkd.beta=2,4", "a setting of the run's method 'kd'"),
    ("kd.temperature=2,x", "the values of kd.temperature must be numbers"),
    ("kd.temperature=2,2", "repeats a value of kd.temperature"),
    ("kd.temperature=2,4;kd.kd_weight=1", "every setting needs as many values"),
    ("kd.transforms=1,2", r"kd.transforms cannot be traced \(it changes the compiled code"),
    ("kd.temperature=-1,4", "config.kd.temperature must be > 0")])
def test_bad_sweeps_are_one_line_errors(sweep, message):
  config = recipes.cifar_run("kd", "cnn_small", "digits")
  config.teacher_model, config.teacher_checkpoint = "cnn_large", "/unused"
  config.sweep = sweep
  with pytest.raises(ValueError, match=message):
    config_validation.validate(config)


@pytest.mark.parametrize("seeds,num_replicas,message", [
    ("0,x", 1, "comma-separated integers"), ("1,1", 1, "repeats a seed"),
    ("0,1", 3, "num_replicas=3 but config.seeds names 2"), ("", 0, "num_replicas must be")])
def test_bad_replica_settings_are_one_line_errors(seeds, num_replicas, message):
  config = recipes.cifar_run("ce", "cnn_small", "digits")
  config.seeds, config.num_replicas = seeds, num_replicas
  with pytest.raises(ValueError, match=message):
    config_validation.validate(config)


def test_replicas_split_over_as_many_device_groups_as_divide_them():
  assert replicas.mesh_shape(4, 8) == (4, 2) and replicas.mesh_shape(3, 8) == (1, 8)
  assert replicas.mesh_shape(16, 8) == (8, 1) and replicas.mesh_shape(1, 8) == (1, 8)
  mesh = step_lib.create_mesh(num_replicas=4)
  assert dict(mesh.shape) == {"replica": 4, "data": 2}
  ids = np.vectorize(lambda device: device.id)(mesh.devices)
  np.testing.assert_array_equal(ids, [[0, 4], [1, 5], [2, 6], [3, 7]])  # d·R + r


def test_a_vmapped_1x1_convolution_split_over_replica_groups_is_right():
  # XLA:CPU (jax 0.10.2) gets this wrong when the compiler splits the replica axis (errors of
  # order 1); `map_replicas` splits it by hand.
  mesh = step_lib.create_mesh(num_replicas=4)
  inputs = jax.random.normal(jax.random.key(0), (4, 8, 4, 4, 16))
  kernels = jax.random.normal(jax.random.key(1), (4, 1, 1, 16, 32))

  def loss(kernel, x):
    y = jax.lax.conv_general_dilated(x, kernel, (1, 1), "SAME",
                                     dimension_numbers=("NHWC", "HWIO", "NHWC"))
    return jnp.sum(y ** 2)

  value_and_grad = jax.value_and_grad(loss)
  expected = jax.jit(jax.vmap(value_and_grad))(kernels, inputs)
  split = jax.jit(replicas.map_replicas(value_and_grad, mesh, in_axes=(0, 0), out_axes=0))(
      jax.device_put(kernels, NamedSharding(mesh, PartitionSpec("replica"))),
      jax.device_put(inputs, step_lib.replica_batch_sharding(mesh)))
  for got, want in zip(split, expected):
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-3)


def test_stack_and_unstack_keep_shared_parts_whole():
  trees = [{"own": np.full((2,), k, np.float32), "shared": np.ones(3)} for k in range(3)]
  axes = {"own": 0, "shared": None}
  stacked = replicas.stack(trees, axes)
  assert stacked["own"].shape == (3, 2) and stacked["shared"].shape == (3,)
  for k in range(3):
    part = replicas.unstack(stacked, axes, k)
    np.testing.assert_array_equal(part["own"], trees[k]["own"])
    np.testing.assert_array_equal(part["shared"], trees[0]["shared"])


def _config(method, teacher_dir):
  config = method_config(method, teacher_dir)
  # At the recipe's 0.05, ATSC on random data is chaotic: one run on 8 devices and on 1
  # device differ by 1.6e-3 after 20 steps (float rounding, amplified); at 0.01 they agree.
  config.batch_size, config.conv_impl, config.optimizer.learning_rate = 16, "xla", 0.01
  return config


def _max_difference(a, b) -> float:
  return max((float(np.max(np.abs(np.asarray(x, np.float64) - np.asarray(y, np.float64))))
              for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b))), default=0.0)


@pytest.mark.slow
@pytest.mark.parametrize("method,seeds,mesh_shape", [
    # A shared teacher; every device splits each batch of every replica (3 and 8 devices).
    ("kd", SEEDS, {"replica": 1, "data": 8}),
    # A replicated teacher and ATSC's projector (an extra module, 1×1 convolutions) on two
    # device groups, one replica each. ce, dkd and student_friendly (its simplifier: an
    # extra module) take these paths and passed too.
    ("atsc", SEEDS[:2], {"replica": 2, "data": 4})])
def test_each_replica_equals_the_single_run_with_its_seed(tmp_path, method, seeds, mesh_shape):
  config = _config(method, export_random_teacher(tmp_path / "teacher"))
  data = {seed: [random_batch(100 * seed + t) for t in range(STEPS)] for seed in seeds}

  mesh = step_lib.create_mesh(num_replicas=len(seeds))
  assert dict(mesh.shape) == mesh_shape
  run, _ = run_builder.build_run(config, INFO, steps_per_epoch=10, mesh=mesh, seeds=seeds)
  state = run.state
  for t in range(STEPS):
    stacked = jax.tree.map(lambda *x: np.stack(x), *(data[seed][t] for seed in seeds))
    state, metrics = run.train_step(
        state, jax.device_put(stacked, step_lib.replica_batch_sharding(mesh)))
  metrics = jax.device_get(metrics)

  single_mesh = step_lib.create_mesh()
  single_step, students = None, []
  for k, seed in enumerate(seeds):
    single_config = replicas.replica_config(config, replicas.Replica(seed))
    single, _ = run_builder.build_run(single_config, INFO,
                                      steps_per_epoch=10, mesh=single_mesh)
    single_step = single_step or single.train_step  # One compiled step serves every seed.
    single_state = single.state
    for batch in data[seed]:
      single_state, single_metrics = single_step(
          single_state, jax.device_put(batch, step_lib.batch_sharding(single_mesh)))
    replica = jax.device_get(run.replica_state(state, k))
    single_state = jax.device_get(single_state)
    if k == 0:  # A frozen teacher is one copy; a trainable one has a replica axis.
      stacked_teacher = [x.shape for x in jax.tree.leaves(state.params["teachers"])]
      single_teacher = [x.shape for x in jax.tree.leaves(single_state.params["teachers"])]
      assert stacked_teacher == ([(len(seeds), *s) for s in single_teacher] if method == "atsc"
                                 else single_teacher)
    assert int(replica.step) == STEPS
    for field in ("params", "batch_stats", "student_opt_state", "method_state"):
      assert _max_difference(getattr(replica, field), getattr(single_state, field)) <= 1e-5, field
    np.testing.assert_array_equal(replica.rng, single_state.rng)
    assert abs(float(metrics["loss"][k]) - float(single_metrics["loss"])) <= 1e-5
    students.append(replica.params["student"])
  assert _max_difference(students[0], students[1]) > 1e-3  # The seeds made different runs.


@pytest.mark.slow
def test_each_setting_of_a_sweep_equals_the_single_run_with_it(tmp_path):
  # ATSC (a replicated teacher, its head update) with atsc.anchor_weight=0,1,10 passes too;
  # kd alone keeps CI short.
  config = _config("kd", export_random_teacher(tmp_path / "teacher"))
  config.sweep = "kd.temperature=2,8"
  runs = replicas.replica_runs(config)
  batches = [random_batch(t) for t in range(STEPS)]  # One seed: every replica's batches.
  mesh = step_lib.create_mesh(num_replicas=len(runs))
  run, _ = run_builder.build_run(config, INFO, 10, mesh, seeds=tuple(r.seed for r in runs),
                                 settings=replicas.sweep_values(runs))
  assert run.shared_batch
  state = run.state
  for batch in batches:
    state, metrics = run.train_step(state, jax.device_put(batch, step_lib.batch_sharding(mesh)))
  metrics = jax.device_get(metrics)
  single_mesh = step_lib.create_mesh()
  finals = []
  for k, replica in enumerate(runs):
    single, _ = run_builder.build_run(replicas.replica_config(config, replica), INFO, 10,
                                      single_mesh)
    single_state = single.state
    for batch in batches:
      single_state, single_metrics = single.train_step(
          single_state, jax.device_put(batch, step_lib.batch_sharding(single_mesh)))
    replica_state = jax.device_get(run.replica_state(state, k))
    single_state = jax.device_get(single_state)
    for field in ("params", "batch_stats", "student_opt_state", "method_state"):
      assert _max_difference(getattr(replica_state, field),
                             getattr(single_state, field)) <= 1e-5, (replica.directory, field)
    assert abs(float(metrics["loss"][k]) - float(single_metrics["loss"])) <= 1e-5
    finals.append(replica_state.params["student"])
  assert _max_difference(finals[0], finals[-1]) > 1e-3  # The settings made different runs.


def test_a_pipeline_with_seeds_links_each_seed_to_its_teacher_and_refuses_sweeps():
  from jaxkd import config_schema, pipeline  # pylint: disable=g-import-not-at-top
  teacher = recipes.cifar_run("ce", "cnn_large", "digits")
  student = recipes.cifar_run("kd", "cnn_small", "digits")
  config = config_schema.teacher_then_student(teacher, student)
  config.seeds = "0,1"  # Shared: every stage trains both seeds.
  stages = pipeline.validated_stages(config, "/w")
  assert stages["student"].seeds == "0,1"
  assert stages["student"].teacher_checkpoint == "/w/seed_{seed}/teacher"
  runs = replicas.single_runs(stages["student"])
  assert [(r.directory, c.teacher_checkpoint) for r, c in runs] == [
      ("seed_0", "/w/seed_0/teacher"), ("seed_1", "/w/seed_1/teacher")]
  assert pipeline.stage_run_dir("/w", "student", "seed_1") == "/w/seed_1/student"
  config.stages.student.sweep = "kd.temperature=2,4"
  with pytest.raises(ValueError, match="stage 'student': a sweep trains a single run"):
    pipeline.validated_stages(config, "/w")


def test_the_results_table_names_each_replica_in_its_own_aligned_row():
  from jaxkd import main  # pylint: disable=g-import-not-at-top
  row = {"method": "ce", "student_model": "cnn_small", "final_test_accuracy": 0.75,
         "test_accuracy_at_best": 0.75, "best_selected_by": "test", "steps": 40,
         "wall_time_s": 2.0}
  names = ["label_smoothing_0", "label_smoothing_0.1/seed_3"]
  lines = main.results_table({"replicas": {name: row for name in names}}).splitlines()
  assert lines[0].startswith("run ") and [line.split()[0] for line in lines[1:]] == names
  assert len({line.index(" ce ") for line in lines[1:]} | {lines[0].index(" method")}) == 1


def test_the_seed_statistics_give_each_setting_its_mean_and_std():
  from jaxkd import main  # pylint: disable=g-import-not-at-top
  settings = {"temperature_2": {"final_test_accuracy_mean": 0.7125,
                                "final_test_accuracy_std": 0.0031,
                                "final_test_accuracy_count": 3},
              "temperature_8": {"final_test_accuracy_mean": 0.70, "final_test_accuracy_std": None,
                                "final_test_accuracy_count": 1}}
  lines = main.seed_statistics_table({"settings": settings}).splitlines()
  assert lines[1].split() == ["temperature_2", "3", "0.7125", "±", "0.0031"]
  assert lines[2].split() == ["temperature_8", "1", "0.7000"]
  seeds = main.seed_statistics_table(settings["temperature_2"]).splitlines()
  assert seeds[1].split() == ["all", "seeds", "3", "0.7125", "±", "0.0031"]
  assert main.seed_statistics_table({"final_test_accuracy": 0.7}) == ""
