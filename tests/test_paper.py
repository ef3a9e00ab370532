"""--preset paper, --dry-run and seeds under random and Optuna search, on a real local Ray.

The paper suite runs through the real CLI on the synthetic benchmark at a tiny scale; the dry runs
run the console script in a subprocess, to show that Ray is never imported.
"""

from __future__ import annotations

import json
import os
import re

import pandas as pd
import pytest
from _layouts import make_affectnet, make_rafdb
from _sweeps import run_without_ray
from click.testing import CliRunner

from sspa_ray.cli.main import cli
from sspa_ray.defaults import make_config
from sspa_ray.orchestration.dryrun import EpochSizes
from sspa_ray.orchestration.plan import ExperimentPlan, Resources
from sspa_ray.orchestration.tuner import run_experiment
from sspa_ray.specs.search_space import load_search_space
from sspa_ray.specs.suite import PAPER_TABLES, paper_suite, parse_feeds

TINY = {"data.synthetic_scale": 0.1, "train.epochs": 2, "train.selection_epochs": 1}
TINY_SETS = [arg for k, v in TINY.items() for arg in ("--set", f"{k}={v}")]
TINY_YAML = "".join(f"  {k}: {v}\n" for k, v in TINY.items())


def test_paper_suite_shares_trials_across_tables():
    rafdb = paper_suite("rafdb")
    trials = rafdb.trials("rafdb", {})
    # 77 trials when the six presets run one by one; 14 of them repeat another table's run.
    assert rafdb.separate_trials("rafdb", {}) == 77 and len(trials) == 63
    feeds = sorted(sorted(t.feeds) for t in trials if len(t.feeds) > 1)
    assert [("table_3", 4), ("table_5", 8), ("table_6", 2), ("table_7", 2), ("table_8", 3)] in feeds  # ARM SSPA-JT
    assert sum(t.feeds == [("table_3", 2)] for t in trials) == 2  # SCN, both backbones: Table 3's alone
    assert sum(t.feeds == [("table_3", 3)] for t in trials) == 2  # DCJT likewise
    assert feeds.count([("table_5", 0), ("table_9", 3)]) == 2        # "none" = 10% direct merge, both backbones
    assert feeds.count([("table_3", 0), ("table_8", 0), ("table_9", 0)]) == 2   # the target alone
    assert list(paper_suite("caers").tables) == ["table_4"]


def _without_data_root() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "SSPA_DATA_ROOT"}


def test_dry_run_of_the_paper_on_rafdb_lists_tables_shared_trials_and_an_estimate(tmp_path):
    make_rafdb(tmp_path / "data")
    make_affectnet(tmp_path / "data")
    out = tmp_path / "exp"
    result = run_without_ray(["ablate", "--preset", "paper", "--target", "rafdb", "--data-root", str(tmp_path / "data"),
                       "--dry-run", "--throughput", "400", "--gpus-per-trial", "1", "--out", str(out)])
    assert result.returncode == 0, result.stderr
    text = result.stdout
    assert "6 tables (table_3, table_5, table_6, table_7, table_8, table_9), 63 distinct trials (77 if each table ran on its own)" in text
    assert "table_3[SSPA-JT (target's aux share)], table_5[SSM + D_T fixed + MoE + PAM], table_6[moe.experts=3]" in text
    assert "resources per trial: 1 CPU and 1 GPU" in text
    assert "of GPU time for 63 trials (throughput given with --throughput" in text and "on 8 GPUs" in text
    assert not out.exists()  # nothing written, no Ray


def test_dry_run_of_the_paper_needs_no_data_and_plans_from_the_official_sizes():
    result = run_without_ray(["ablate", "--preset", "paper", "--target", "rafdb", "--dry-run", "--throughput", "2000"],
                      env=_without_data_root())
    assert result.returncode == 0, result.stderr
    text = result.stdout
    trials = re.search(r"(\d+) distinct trials", text)[1]
    assert "from the official split sizes, as no --data-root is given: rafdb 12,271 train, affectnet 283,901 train" in text
    assert f"of device time for {trials} trials (throughput given with --throughput" in text


def test_dry_run_makes_no_estimate_that_a_cpu_would_mislead(tmp_path):
    env = {**_without_data_root(), "SSPA_CACHE_DIR": str(tmp_path / "cache")}
    gpu_run = run_without_ray(["ablate", "--preset", "paper", "--target", "caers", "--dry-run", "--gpus-per-trial", "1"], env=env)
    assert gpu_run.returncode == 0, gpu_run.stderr
    assert "caers 44,996 train" in gpu_run.stdout
    assert "estimate: none; the trials ask for GPUs and this machine has none: give --throughput" in gpu_run.stdout
    large = run_without_ray(["ablate", "--preset", "modules", "--target", "rafdb", "--dry-run"], env=env)
    assert large.returncode == 0, large.stderr
    assert "estimate: none; resnet18 at 224 px is not timed on a CPU" in large.stdout
    assert not (tmp_path / "cache" / "throughput.json").exists()


def test_a_gpu_runs_dry_run_on_a_cpu_quotes_the_measured_gpu_figures(tmp_path, monkeypatch):
    from sspa_ray.defaults import make_config
    from sspa_ray.engine import throughput

    cfg = make_config("rafdb", {"train.device": "cpu", "train.precision": "bf16"})
    monkeypatch.setitem(throughput.GPU_FIGURES, throughput.SpeedKey("NVIDIA H100 80GB HBM3", "resnet18", 224, 128, "bf16"), 15000.0)
    monkeypatch.setitem(throughput.GPU_FIGURES, throughput.SpeedKey("NVIDIA H100 80GB HBM3", "arm", 224, 128, "bf16"), 9000.0)
    # A cache folder shared with a GPU machine holds its bursts; this CPU's own figures are not quoted.
    monkeypatch.setenv("SSPA_CACHE_DIR", str(tmp_path))
    for device, img_per_s in (("NVIDIA H200", 17000.0), ("cpu: AMD EPYC, 1 thread", 40.0)):
        key = throughput.SpeedKey(device, "resnet18", 224, 128, "bf16")
        throughput._write_cache(key, throughput.Throughput(img_per_s, "measured"))
    found = throughput.estimate(cfg, gpu_run=True)
    assert isinstance(found, throughput.NoEstimate)
    assert found.reason.endswith("(measured for resnet18 at 224 px: NVIDIA H200 17000 img/s; "
                                 "NVIDIA H100 80GB HBM3 15000 img/s)")


def test_dry_run_counts_the_synthetic_aux_set_at_the_paper_ratio():
    # 1000 target images plus 10% of the 23,000 aux ones, in whole batches of 64; at 100%, 24,000.
    assert EpochSizes()(make_config("synthetic")) == 3264
    assert EpochSizes()(make_config("synthetic", {"data.aux_ratio": 1.0})) == 24000


def test_dry_run_measures_the_engine_once_and_then_reads_the_cache(tmp_path):
    space = tmp_path / "space.yaml"
    space.write_text(f"search: random\nnum_samples: 3\nspace:\n  pam.beta: {{uniform: [0.5, 3]}}\nfixed:\n{TINY_YAML}")
    env = {**os.environ, "SSPA_CACHE_DIR": str(tmp_path / "cache")}
    result = run_without_ray(["tune", str(space), "--seeds", "2", "--num-samples", "5", "--dry-run"], env=env)
    assert result.returncode == 0, result.stderr
    assert "10 trials (random search, 2 seeds each)" in result.stdout
    measured = re.search(r"throughput (\d+) img/s for small at 32 px \(measured: a burst of the engine, SSPA-JT "
                         r"with small at 32 px on cpu, the median of 5 PA epochs .* after 2 warm-up epochs; they "
                         r"ranged [\d,]+-[\d,]+ img/s, a spread of \d+% of the median\)", result.stdout)
    assert measured, result.stdout
    cache = json.loads((tmp_path / "cache" / "throughput.json").read_text())
    [(key, entry)] = cache.items()
    assert key.endswith("1 thread | small 32px | batch 64 | fp32") and round(entry["img_per_s"]) == int(measured[1])
    again = run_without_ray(["tune", str(space), "--dry-run"], env=env)
    assert again.returncode == 0, again.stderr
    assert f"throughput {measured[1]} img/s for small at 32 px" in again.stdout
    assert f"cached {entry['measured']} in {tmp_path / 'cache' / 'throughput.json'}" in again.stdout


def test_random_search_runs_every_sampled_configuration_once_per_seed(local_ray, tmp_path):
    space = tmp_path / "space.yaml"
    space.write_text(f"search: random\nnum_samples: 2\nspace:\n  pam.beta: {{uniform: [0.5, 3]}}\nfixed:\n{TINY_YAML}")
    plan = ExperimentPlan.for_search(load_search_space(space), target="synthetic", sets={}, seeds=2,
                                     out=tmp_path / "exp", name=None, storage=None,
                                     resources=Resources(max_concurrent=1))  # one trial process (README, Development)
    plan.prepare_out(resume=False, overwrite=False)
    frame = run_experiment(plan, progress_interval_s=60.0)
    assert len(frame) == 4
    seeds_per_beta = frame.groupby("pam.beta")["train.seed"].apply(sorted).tolist()
    assert seeds_per_beta == [[0, 1], [0, 1]]   # two draws of beta, each run with seeds 0 and 1
    assert "(n=2)" in (tmp_path / "exp" / "table.md").read_text()


def test_optuna_with_two_seeds_and_two_samples_runs_four_trials(local_ray, tmp_path):
    space = tmp_path / "space.yaml"
    space.write_text(f"search: optuna\nmetric: accuracy\nnum_samples: 7\nspace:\n"
                     f"  train.lr: {{loguniform: [0.001, 0.1]}}\nfixed:\n{TINY_YAML}")
    out = tmp_path / "exp"
    result = CliRunner().invoke(cli, ["tune", str(space), "--seeds", "2", "--num-samples", "2", "--out", str(out),
                                      "--max-concurrent", "1"])
    assert result.exit_code == 0, result.output
    frame = pd.read_parquet(out / "results.parquet")
    assert len(frame) == 4 and (frame["status"] == "completed").all()
    assert frame.groupby("train.lr")["train.seed"].apply(sorted).tolist() == [[0, 1], [0, 1]]


@pytest.mark.slow  # 41 trials, one at a time, and every table rendered: the longest single test
def test_paper_preset_on_synthetic_renders_every_table_from_shared_trials(local_ray, tmp_path):
    out = tmp_path / "paper"
    args = ["ablate", "--preset", "paper", "--target", "synthetic", *TINY_SETS, "--out", str(out), "--max-concurrent", "1"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    frame = pd.read_parquet(out / "results.parquet")
    suite = paper_suite("synthetic")
    assert len(frame) == len(suite.trials("synthetic", TINY)) == 41 and (frame["status"] == "completed").all()
    # Every trial once: no two rows share a configuration and seed.
    config_columns = [c for c in frame.columns
                      if c.startswith(("method.", "modules.", "moe.", "pam.", "data.aux", "train.seed"))]
    assert not frame.duplicated(config_columns).any()
    feeds = [parse_feeds(f) for f in frame["feeds"]]
    full_model = next(f for f in feeds if ("table_6", 2) in f)
    assert sorted(t for t, _ in full_model) == ["table_3", "table_5", "table_6", "table_7", "table_8"]
    for table in PAPER_TABLES["synthetic"]:
        md = (out / table / "table.md").read_text()
        assert suite.tables[table].title in md and "pending" not in md
        assert (out / table / "spec.yaml").is_file() and (out / table / "table.tex").is_file()
        rows = sum(1 for f in feeds for t, _ in f if t == table)
        assert rows == len(suite.tables[table].trials("synthetic", TINY))
    for plot in ("table_3/relabel.png", "table_5/modules.pdf", "table_7/beta_heatmap.pdf", "table_8/aux_ratio.pdf", "aux_share.pdf", "aux_share.png"):
        assert (out / plot).is_file(), plot
    combined = (out / "table.md").read_text().split("\n\n")
    assert combined[0].startswith("Provenance: target synthetic (") and "--set data.synthetic_scale=0.1" in combined[0]
    assert combined[1].startswith("41 distinct trials fill the rows of 6 tables")
    assert json.loads((out / "experiment.json").read_text())["suite"] == "paper"

    # --resume of the finished suite has nothing to run: it says so, and neither Tune nor the tables start again.
    ids = set(frame["trial_id"])
    tables = {path: path.stat().st_mtime_ns for path in out.rglob("table.md")}
    result = CliRunner().invoke(cli, [*args, "--resume"])
    assert result.exit_code == 0, result.output
    assert f"nothing to resume: all 41 trials of {out} had finished" in result.output
    assert set(pd.read_parquet(out / "results.parquet")["trial_id"]) == ids
    assert len(json.loads((out / "experiment.json").read_text())["runs"]) == 1
    assert {path: path.stat().st_mtime_ns for path in out.rglob("table.md")} == tables
