"""The multi-seed study runner: its statistics, its sharding and skipping, and the digits
suite end to end (shards, rerun, STUDY.md section, plots)."""

import json
import math
import os

import pytest

from benchmarks import (study, study_configs, study_plots, study_report, study_results,
                        study_runs, study_stats, study_suite)
from benchmarks.study_sources import Reference
from jaxkd import config_schema, recipes

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def test_mean_and_sample_std_of_three_seeds():
  values = [70.1, 70.5, 70.9]
  assert study_stats.mean(values) == pytest.approx(70.5)
  # Squared deviations 0.16, 0, 0.16 over n − 1 = 2: variance 0.16.
  assert study_stats.sample_std(values) == pytest.approx(0.4)
  assert study_stats.sample_std([70.1]) is None


def test_welch_interval_with_equal_variances_has_2n_minus_2_degrees_of_freedom():
  # s² = 0.16 on both sides, n = 3: se = sqrt(2 · 0.16 / 3), ν = 4, t(0.975, 4) = 2.776445
  # (a t table).
  interval = study_stats.welch_interval([70.1, 70.5, 70.9], [69.0, 69.4, 69.8])
  assert interval.degrees_of_freedom == pytest.approx(4.0)
  se = math.sqrt(2 * 0.16 / 3)
  assert interval.difference == pytest.approx(1.1)
  assert interval.low == pytest.approx(1.1 - 2.776445 * se, abs=1e-5)
  assert interval.high == pytest.approx(1.1 + 2.776445 * se, abs=1e-5)
  assert (interval.low, interval.high) == pytest.approx((0.193217, 2.006783), abs=1e-5)


def test_welch_interval_of_two_seeds_uses_the_closed_form_t_quantile_of_two_dof():
  # s² = 0.5 on both sides, n = 2: ν = 2, where t(p, 2) = (2p − 1) / sqrt(2p(1 − p)).
  interval = study_stats.welch_interval([71.0, 72.0], [69.0, 70.0])
  t = (2 * 0.975 - 1) / math.sqrt(2 * 0.975 * 0.025)
  assert t == pytest.approx(4.302653, abs=1e-6)
  assert interval.degrees_of_freedom == pytest.approx(2.0)
  assert (interval.low, interval.high) == pytest.approx((2 - t * 0.5 ** 0.5, 2 + t * 0.5 ** 0.5))


def test_welch_degrees_of_freedom_with_unequal_variances():
  # s²_a / n_a = (5/3) / 4 = 5/12, s²_b / n_b = 2 / 2 = 1:
  # ν = (17/12)² / ((5/12)² / 3 + 1² / 1) = 867 / 457.
  interval = study_stats.welch_interval([1, 2, 3, 4], [2, 4])
  assert interval.degrees_of_freedom == pytest.approx(867 / 457)
  assert interval.difference == pytest.approx(-0.5)
  assert interval.low < -0.5 < interval.high


def test_welch_interval_needs_two_values_on_each_side():
  assert study_stats.welch_interval([70.0], [69.0, 69.5]) is None
  assert study_stats.welch_interval([70.0, 70.5], [69.0]) is None
  same = study_stats.welch_interval([70.0, 70.0], [69.0, 69.0])
  assert (same.low, same.difference, same.high) == (1.0, 1.0, 1.0)


def test_shards_partition_the_runs_seed_by_seed():
  labels, seeds = ("ce", "kd", "dkd"), (0, 1, 2)
  runs = study_runs.plan_runs("/w", labels, seeds)
  assert [(r.label, r.seed) for r in runs[:3]] == [("ce", 0), ("kd", 0), ("dkd", 0)]
  assert runs[0].workdir == os.path.join("/w", "ce", "seed_0")
  shards = [study_runs.shard_runs(runs, i, 2) for i in range(2)]
  assert sorted(shards[0] + shards[1], key=runs.index) == runs
  assert not set(shards[0]) & set(shards[1])
  assert study_runs.parse_shard("1/2") == (1, 2)
  with pytest.raises(ValueError, match="must be i/n"):
    study_runs.parse_shard("2")
  with pytest.raises(ValueError, match="between 0 and n − 1 = 1"):
    study_runs.parse_shard("2/2")


def test_seeds_of_a_label_group_into_replicas_pipelines_too():
  runs = study_runs.plan_runs("/w", ("ce", "gt"), (0, 1, 2))
  pipeline = config_schema.teacher_then_student(recipes.cifar_run("ce", "cnn_large", "digits"),
                                                recipes.cifar_run("kd", "cnn_small", "digits"))
  single = recipes.cifar_run("ce", "cnn_small", "digits")
  config_of = lambda run: pipeline if run.label == "gt" else single
  groups = study_runs.replica_groups(runs, config_of, 2)
  assert [[(r.label, r.seed) for r in group] for group in groups] == [
      [("ce", 0), ("ce", 1)], [("gt", 0), ("gt", 1)], [("ce", 2)], [("gt", 2)]]
  assert study_runs.replica_groups(runs, config_of, 1) == [[run] for run in runs]


def test_a_run_is_done_at_its_stop_step_and_counts_only_for_that_budget():
  suite = study_suite.load_suite("digits_smoke")
  config = study_configs.run_config(suite, suite.entry("kd"), 0, "/t", None,
                                    study_configs.RunSettings(max_steps=10))
  summary = {"steps": 10, "total_steps": 57}
  assert study_runs.is_done(summary, config) and study_runs.matches_config(summary, config)
  longer = study_configs.run_config(suite, suite.entry("kd"), 0, "/t", None,
                                    study_configs.RunSettings())
  assert not study_runs.is_done(summary, longer)  # Resumed, not skipped, for the full budget.
  assert not study_runs.matches_config({"steps": 57, "total_steps": 57}, config)
  assert not study_runs.is_done(None, config)


def test_suites_load_and_name_their_reconstruction_choices():
  full = study_suite.load_suite("cifar100_r56_r20_full")
  cpu = study_suite.load_suite("cifar100_r56_r20_cpu")
  assert cpu.labels == tuple(label for label in full.labels if label not in ("simkd", "atsc"))
  assert "SimKD and ATSC are left out" in " ".join(cpu.notes)
  assert full.long and not cpu.long and full.seeds == cpu.seeds == (0, 1, 2)
  assert full.entry("student_friendly_no_guard").settings == {"simplifier_ce_weight": 0.0}
  assert full.entry("generous_kd").chain == "generous ▶ kd"
  for label in ("dtd", "student_friendly", "atsc", "generous_kd"):
    assert full.entry(label).ours
  assert [(p.row, p.accuracy) for p in full.published] == [
      ("teacher", 72.34), ("ce", 69.06), ("kd", 70.66), ("dkd", 71.97), ("lskd", 71.43)]
  with pytest.raises(ValueError, match="no suite 'nope'; suites: .*digits_smoke"):
    study_suite.load_suite("nope")
  with pytest.raises(ValueError, match="did you mean 'digits_smoke'"):
    study_suite.load_suite("digit_smoke")


def test_a_mistyped_method_label_is_refused_with_the_closest_label(tmp_path):
  args = study.parse_args(["--suite", "digits_smoke", "--workdir", str(tmp_path),
                           "--methods", "ce,kdd"])
  with pytest.raises(SystemExit, match="--methods: unknown value 'kdd'; valid: .*; did you "
                                       "mean 'kd'\\?"):
    study.run(args, "python -m benchmarks.study")
  assert not os.listdir(tmp_path)


def _history(accuracies, teacher=False):
  points = []
  for step, accuracy in enumerate(accuracies, 1):
    point = {"step": 10 * step, "epoch": step / 2, "test/accuracy": accuracy}
    if teacher:
      point.update({"teacher/0/test_accuracy": 0.7, "teacher/0/relative_distance": 0.01 * step})
    points.append(point)
  return points


def _method_result(label, method, finals, teacher=False):
  seeds = tuple(
      study_results.SeedResult(seed, {"final_test_accuracy": final,
                                      "test_accuracy_at_best": final - 0.001,
                                      "images_per_s": 100.0, "hardware": "cpu",
                                      "history": _history([0.5, final], teacher)}, {}, 60.0)
      for seed, final in enumerate(finals))
  return study_results.MethodResult(study_suite.MethodEntry(label, method, ours="ours!"), seeds)


def test_table_rows_differences_and_single_seed_dashes():
  suite = study_suite.Suite(
      name="toy", purpose="p", dataset="digits", teacher=study_suite.TrainedTeacher("cnn_large"),
      student_model="cnn_small", schedule={},
      methods=(study_suite.MethodEntry("ce", "ce"), study_suite.MethodEntry("kd", "kd"),
               study_suite.MethodEntry("atsc", "atsc")),
      seeds=(0, 1), published=(study_suite.Published("kd", 70.66, "mdistiller README"),))
  results = [_method_result("ce", "ce", [0.691, 0.695, 0.699]),
             _method_result("kd", "kd", [0.701, 0.705, 0.709]),
             _method_result("atsc", "atsc", [0.65])]
  lines = study_report.table(suite, [Reference("teacher", "teacher t (x.pth)", 0.7263, 10000)],
                             results, validated=True)
  assert lines[0].startswith("| row | method | n | final test (%) | test at best validation (%) "
                             "| Δ final vs ce (pts, 95% CI) | Δ final vs kd (pts, 95% CI) |")
  assert lines[2].startswith("| teacher t (x.pth) | — | 1 | 72.63 |")
  # kd − ce = 1.00 points; sample std 0.4 points each side, ν = 4.
  half = 2.776445 * math.sqrt(2 * 0.16 / 3)
  assert lines[4] == (f"| kd | kd | 3 | 70.50 ± 0.40 | 70.40 ± 0.40 | +1.00 [{1 - half:+.2f}, "
                      f"{1 + half:+.2f}] | — | 60 s | 100 | 70.66 (mdistiller README) | ours! |")
  assert lines[5].startswith("| atsc | atsc | 1 | 65.00 ± — | 64.90 ± — | n/a | n/a |")


def test_runs_trained_as_replicas_count_their_share_of_the_wall_time_and_all_their_images():
  alone = {"wall_time_s": 90.0, "images_per_s": 100.0}
  together = {"wall_time_s": 90.0, "images_per_s": 40.0, "replicas_trained_together": 3}
  assert study_results.share_seconds(alone) == 90.0
  assert study_results.share_seconds(together) == 30.0
  pipeline = {"wall_time_s": 210.0,
              "stages": {"generous": dict(together, wall_time_s=120.0), "student": together}}
  assert study_results.share_seconds(pipeline) == 40.0 + 30.0
  kd = study_suite.MethodEntry("kd", "kd")
  seeds = tuple(study_results.SeedResult(seed, dict(summary, final_test_accuracy=0.7,
                                                    test_accuracy_at_best=0.7),
                                         {}, study_results.share_seconds(summary))
                for seed, summary in enumerate((alone, together)))
  suite = study_suite.Suite(name="toy", purpose="p", dataset="digits",
                            teacher=study_suite.TrainedTeacher("cnn_large"),
                            student_model="cnn_small", schedule={}, methods=(kd,), seeds=(0, 1))
  results = [study_results.MethodResult(kd, seeds)]
  row = study_report.table(suite, [], results, validated=True)[2]
  assert "| 60 s | 110 |" in row  # Mean of 90 s and 90 s ÷ 3; mean of 100 and 3 × 40 images/s.
  assert study_report.replicas_line(results)[0].startswith(
      "- Replicas: seeds trained together as replicas of one run (3 at a time")


def test_teacher_plot_only_for_methods_whose_teacher_adapts(tmp_path):
  frozen = _method_result("kd", "kd", [0.70, 0.71])
  assert not study_plots.teacher_plot([frozen], "t", str(tmp_path / "none.png"))
  assert not (tmp_path / "none.png").exists()
  adaptive = _method_result("atsc", "atsc", [0.70, 0.71], teacher=True)
  assert study_plots.teacher_plot([frozen, adaptive], "t", str(tmp_path / "teacher.png"))
  assert (tmp_path / "teacher.png").read_bytes().startswith(PNG_SIGNATURE)


def _summary(workdir, label, seed):
  with open(os.path.join(workdir, label, f"seed_{seed}", "summary.json")) as f:
    return json.load(f)


@pytest.mark.slow
def test_digits_suite_shards_rerun_and_results(tmp_path, capsys):
  workdir, results_path = str(tmp_path / "study"), str(tmp_path / "STUDY.md")
  study_report.write_section("another_suite", ["## another suite", "kept as it was"],
                             results_path)
  base = ["--suite", "digits_smoke", "--workdir", workdir]
  assert study.main(base + ["--shard", "0/2"]) == 0  # Runs ce/0, ce/1 (seed by seed: ce, kd).
  assert sorted(os.listdir(workdir)) == ["ce", "references", "teacher"]
  assert study.main(base + ["--shard", "1/2"]) == 0
  wall_times = {(label, seed): _summary(workdir, label, seed)["wall_time_s"]
                for label in ("ce", "kd") for seed in (0, 1)}
  capsys.readouterr()

  assert study.main(base + ["--write-results", "--results-path", results_path]) == 0
  assert "4 of 4 run(s) already done; 0 to train." in capsys.readouterr().out
  assert wall_times == {key: _summary(workdir, *key)["wall_time_s"] for key in wall_times}

  text = open(results_path).read()
  assert text.splitlines()[0] == study_report.STUDY_TITLE
  assert "<!-- begin study.another_suite -->\n## another suite\nkept as it was" in text
  assert "<!-- begin study.digits_smoke -->" in text
  section = text[text.index("<!-- begin study.digits_smoke -->"):]
  assert "python -m benchmarks.study --suite digits_smoke" in section
  assert "trained on 1,237 of the 1,437 training images; the other 200" in section
  rows = [line for line in section.splitlines() if line.startswith("| ")]
  assert rows[0].startswith("| row | method | n | final test (%) | test at best validation (%) "
                            "| Δ final vs ce (pts, 95% CI) | Δ final vs kd (pts, 95% CI) |")
  assert rows[1].startswith("| teacher cnn_large (CE, trained by the suite) | — | 1 |")
  finals = {label: [_summary(workdir, label, s)["final_test_accuracy"] for s in (0, 1)]
            for label in ("ce", "kd")}
  assert rows[2].startswith(f"| ce | ce | 2 | {study_report.mean_std(finals['ce'])} |")
  kd_cells = [cell.strip() for cell in rows[3].strip("|").split("|")]
  assert kd_cells[:3] == ["kd", "kd", "2"]
  assert kd_cells[5] == study_report.difference(finals["kd"], finals["ce"])
  assert kd_cells[6] == "—"

  # Two more seeds of kd, trained together as replicas, land where the table reads them.
  more = base + ["--methods", "kd", "--seeds", "2,3", "--replicas", "2"]
  assert study.main(more) == 0
  assert "(with 1 other seed(s) as replicas)" in capsys.readouterr().out
  assert study.main(more) == 0
  assert "2 of 2 run(s) already done; 0 to train." in capsys.readouterr().out
  assert [_summary(workdir, "kd", seed)["seed"] for seed in (2, 3)] == [2, 3]
  # A tagged section of its own (beside the suite's, kept) says how it counts replicas.
  assert study.main(base + ["--no-train", "--write-results", "--results-path", results_path,
                            "--results-tag", "replicas"]) == 0
  text = open(results_path).read()
  main_table = section[:section.index("<!-- end study.digits_smoke -->")]
  assert main_table in text
  tagged = text[text.index("<!-- begin study.digits_smoke.replicas -->"):]
  assert "## digits_smoke (replicas): " in tagged
  assert "- Replicas: seeds trained together as replicas of one run (2 at a time" in tagged
  assert (tmp_path / "study" / "digits_smoke_replicas_accuracy.png").exists()

  png = tmp_path / "study" / "digits_smoke_accuracy.png"
  assert png.read_bytes().startswith(PNG_SIGNATURE) and png.stat().st_size > 1000
  assert "![test accuracy against epoch](study/digits_smoke_accuracy.png)" in section
  assert not (tmp_path / "study" / "digits_smoke_teacher.png").exists()


def test_records_of_finished_runs_are_saved_and_restored_where_missing(tmp_path):
  from benchmarks import study_records  # pylint: disable=g-import-not-at-top
  study = tmp_path / "study"
  single, pipeline = study / "kd" / "seed_0", study / "generous_kd" / "seed_1"
  for directory, files in ((single, ("summary.json", "fingerprint.json", "curves.png")),
                           (pipeline, ("summary.json",)),
                           (pipeline / "generous", ("summary.json", "fingerprint.json")),
                           (pipeline / "student" / "checkpoints", ("state",))):
    directory.mkdir(parents=True, exist_ok=True)
    for name in files:
      (directory / name).write_text(f"{directory.name}/{name}")
  records = tmp_path / "records"
  assert study_records.save([str(single), str(pipeline)], str(study), str(records)) == 5
  assert sorted(p.relative_to(records).as_posix() for p in records.rglob("*") if p.is_file()) == [
      "generous_kd/seed_1/generous/fingerprint.json", "generous_kd/seed_1/generous/summary.json",
      "generous_kd/seed_1/summary.json", "kd/seed_0/fingerprint.json", "kd/seed_0/summary.json"]
  elsewhere = tmp_path / "elsewhere"
  (elsewhere / "kd" / "seed_0").mkdir(parents=True)
  (elsewhere / "kd" / "seed_0" / "summary.json").write_text("its own")
  assert study_records.restore(str(records), str(elsewhere)) == 4
  assert (elsewhere / "kd" / "seed_0" / "summary.json").read_text() == "its own"  # Kept.
  assert (elsewhere / "generous_kd" / "seed_1" / "generous" / "summary.json").read_text() == (
      "generous/summary.json")
  assert study_records.restore(str(tmp_path / "none"), str(elsewhere)) == 0


def test_a_partial_table_says_which_runs_it_still_lacks():
  suite = study_suite.Suite(
      name="toy", purpose="p", dataset="digits", teacher=study_suite.TrainedTeacher("cnn_large"),
      student_model="cnn_small", schedule={},
      methods=(study_suite.MethodEntry("ce", "ce"), study_suite.MethodEntry("kd", "kd"),
               study_suite.MethodEntry("atsc", "atsc")), seeds=(0, 1))
  complete = [_method_result(label, label, [0.6, 0.61]) for label in ("ce", "kd", "atsc")]
  assert study_report.completeness_line(suite, complete) == []
  (line,) = study_report.completeness_line(suite, complete[:1] + [_method_result("kd", "kd",
                                                                                 [0.6])])
  assert line.startswith("- **Partial**: 3 of the suite's 6 runs are finished; still to train "
                         "(runs): kd (1), atsc (2).")
