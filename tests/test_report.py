"""Tables, statistics and plots from results.parquet, checked against hand-computed values.

The fixtures are real experiment directories in the layout of ARCHITECTURE.md: results.parquet
with every dotted config key, spec.yaml and experiment.json.
"""

import html
import json
import math
import re
import shutil
import subprocess
import warnings

import pandas as pd
import pytest
from click.testing import CliRunner
from scipy import stats

from sspa_ray.config import KEYS
from sspa_ray.defaults import make_config
from sspa_ray.report import render_experiment
from sspa_ray.report.table_model import rank_marks
from sspa_ray.specs import load_ablation

METRICS = ("accuracy", "macro_precision", "macro_recall", "macro_f1")


def record(target, overrides, *, row, value, status="completed", error="", seed=0, extra=None):
    """One results.parquet row; every metric gets `value` (NaN when the trial did not complete)."""
    cfg = make_config(target, {**overrides, "train.seed": seed})
    metric = value if status in ("completed", "stopped") else math.nan
    out = {**cfg.to_flat(), "trial_id": f"t{row}_{seed}_{len(overrides)}", "status": status, "error": error,
           "epochs_done": cfg.train.epochs if status == "completed" else 1, "row": row,
           "best.epoch": cfg.train.epochs - 1, "clean_share": 0.5,
           "selection_precision": math.nan, "selection_recall": math.nan}
    for m in METRICS:
        out[m] = metric
        out[f"best.{m}"] = metric + 0.01
    out.update(extra or {})
    return out


# experiment.json's `runs`, as a start and a resume on the next day write them.
RUNS = [{"date": "2026-12-01T10:00:00Z", "code": "sspa-ray 0.1.0, git abcdef12"},
        {"date": "2026-12-02T09:00:00Z", "code": "sspa-ray 0.1.0, git abcdef12"}]


def experiment(tmp_path, preset, target, records, *, seeds=1, kind="ablate", overrides=None, name="exp", runs=RUNS,
               experiment_path=None):
    out = tmp_path / name
    out.mkdir()
    frame = pd.DataFrame.from_records(records)
    assert set(KEYS) <= set(frame.columns)
    frame.to_parquet(out / "results.parquet", index=False)
    if preset:
        shutil.copy(load_ablation(preset).path, out / "spec.yaml")
    (out / "experiment.json").write_text(json.dumps(
        {"kind": kind, "name": name, "target": target, "overrides": overrides or {}, "seeds": seeds,
         "metric": "macro_f1", "mode": "max", "runs": runs,
         **({"experiment_path": str(experiment_path)} if experiment_path else {})}))
    return out


def all_trials(preset, target, value_of, seeds=1):
    """A record for every trial of a preset; value_of(row, seed) gives its metric."""
    spec = load_ablation(preset)
    return [record(target, t.overrides, row=t.row, seed=t.overrides["train.seed"], value=value_of(t.row, t.overrides["train.seed"]))
            for t in spec.trials(target, {}, seeds)]


def test_paired_test_holm_and_ci_match_scipy_on_hand_made_numbers(tmp_path):
    # Row 0 (k=1): 0.80, 0.82, 0.84 -> mean 82.00 %, std (ddof=1) 2.00 %.
    # Row 2 (k=3, the baseline): 0.70, 0.71, 0.72 -> mean 71.00 %, std 1.00 %.
    # Seeds 0-2 in both rows: paired differences 0.10, 0.11, 0.12 -> t = 19.05, df 2.
    a, b = [0.80, 0.82, 0.84], [0.70, 0.71, 0.72]
    paired = stats.ttest_rel(a, b).pvalue
    assert paired == pytest.approx(0.0027435, abs=1e-6)
    spec = load_ablation("experts")
    rows = [record("synthetic", t.overrides, row=t.row, seed=t.overrides["train.seed"],
                   value=(a if t.row == 0 else b)[t.overrides["train.seed"]])
            for t in spec.trials("synthetic", {}, 3) if t.row in (0, 2)]
    out = experiment(tmp_path, "experts", "synthetic", rows, seeds=3)
    written = render_experiment(out)
    table = pd.read_csv(written["csv"])
    k1, k3 = table[table["moe.experts"] == 1].iloc[0], table[table["moe.experts"] == 3].iloc[0]
    assert (k1["accuracy.mean_pct"], k1["accuracy.std_pct"], k1["accuracy.n"]) == (82.0, 2.0, 3)
    assert (k3["accuracy.mean_pct"], k3["accuracy.std_pct"]) == (71.0, 1.0)
    assert k1["accuracy.p_value"] == pytest.approx(paired, rel=1e-9)
    # Four tests in the table (one row, four metrics, equal p): Holm multiplies each by 4.
    assert k1["accuracy.p_holm"] == pytest.approx(4 * paired, rel=1e-9)
    half = stats.t.ppf(0.975, 2) * 0.02 / math.sqrt(3)
    assert (k1["accuracy.ci_low_pct"], k1["accuracy.ci_high_pct"]) == (round((0.82 - half) * 100, 2), round((0.82 + half) * 100, 2))
    assert math.isnan(k3["accuracy.p_value"])  # the baseline is not tested against itself
    # The three rows that never reported are pending, not dropped.
    assert list(table["pending"]) == [0, 3, 0, 3, 3] and len(table) == 5
    md = written["md"].read_text()
    assert "| 1 | **82.00 [77.03, 86.97] (n=3)**\\*" in md
    assert "<u>71.00 [68.52, 73.48] (n=3)</u> |" in md
    assert "a t-test paired by seed" in md and "Holm's correction over the 4 tests of this table" in md
    assert "95% confidence interval" in md
    assert re.search(r"\| 5 \| pending \|", md)


def test_holm_and_welch_against_independent_values():
    from sspa_ray.report.significance import holm, paired_p, welch_p

    ps = [0.01, 0.04, None, 0.03, 0.005]
    # Holm by hand: sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1, made monotone.
    assert holm(ps) == pytest.approx([0.03, 0.06, None, 0.06, 0.02])
    x, y = [0.5, 0.7, 0.6, 0.9], [0.4, 0.45, 0.5]
    assert welch_p(x, y) == pytest.approx(stats.ttest_ind(x, y, equal_var=False).pvalue)
    assert paired_p([0.5, 0.7, 0.6], [0.4, 0.65, 0.5]) == pytest.approx(stats.ttest_rel([0.5, 0.7, 0.6], [0.4, 0.65, 0.5]).pvalue)
    assert paired_p([0.5], [0.4]) is None and paired_p([0.5, 0.6], [0.5, 0.6]) is None  # one pair; no differences


def test_the_confidence_interval_stays_within_the_metrics_range():
    from sspa_ray.report.significance import mean_ci

    # Three seeds, one far off: Student's t (4.30 at n = 3) reaches past 100% and below 0%.
    low, high = mean_ci([0.99, 0.98, 0.70])
    assert high == 1.0 and 0.0 < low < 0.89
    low, high = mean_ci([0.01, 0.02, 0.30])
    assert low == 0.0 and high < 1.0
    half = stats.t.ppf(0.975, 2) * stats.sem([0.5, 0.6, 0.7])
    assert mean_ci([0.5, 0.6, 0.7]) == pytest.approx((0.6 - half, 0.6 + half))  # inside: unchanged


def test_unmatched_seeds_fall_back_to_welch_and_many_rows_are_corrected(tmp_path):
    # Every row of Table 6 (synthetic) beats the baseline k=3 by the same small margin, with
    # seeds 0-1 for the baseline and seeds 5-6 elsewhere: Welch's test, corrected over 16 tests.
    spec = load_ablation("experts")
    base = {0: 0.70, 1: 0.72}
    rows = []
    for t in spec.trials("synthetic", {}, 2):
        seed = t.overrides["train.seed"]
        if t.row == 2:
            rows.append(record("synthetic", t.overrides, row=t.row, seed=seed, value=base[seed]))
        else:
            rows.append(record("synthetic", t.overrides, row=t.row, seed=seed + 5, value=0.74 + 0.01 * seed))
    out = experiment(tmp_path, "experts", "synthetic", rows, seeds=2)
    table = pd.read_csv(render_experiment(out)["csv"])
    raw = stats.ttest_ind([0.74, 0.75], [0.70, 0.72], equal_var=False).pvalue
    k1 = table[table["moe.experts"] == 1].iloc[0]
    assert k1["accuracy.p_value"] == pytest.approx(raw) and k1["accuracy.p_holm"] == pytest.approx(min(1.0, 16 * raw))
    md = (out / "table.md").read_text()
    assert "Welch's t-test" in md and "± = standard deviation over the two seeds" in md


def test_rank_marks_give_ties_the_same_mark():
    assert rank_marks([0.9, 0.9, 0.8, 0.7, None]) == ["best", "best", "second", "", ""]
    assert rank_marks([0.9, 0.8, 0.8]) == ["best", "second", "second"]
    assert rank_marks([None, 0.5]) == ["", "best"]


def test_bold_and_underline_in_markdown_and_latex_with_ties(tmp_path):
    # Accuracies of k = 1, 2, 3, 5, 10: two tie for best at the shown precision (90.00).
    values = {0: 0.900001, 1: 0.899996, 2: 0.85, 3: 0.85, 4: 0.70}
    out = experiment(tmp_path, "experts", "synthetic", all_trials("experts", "synthetic", lambda r, s: values[r]))
    written = render_experiment(out)
    md = written["md"].read_text()
    assert md.count("**90.00**") == 2 * 4 and md.count("<u>85.00</u>") == 2 * 4
    assert "| 10 | 70.00 |" in md
    # One seed: no n, no spread, no talk of ddof or significance.
    assert "n=1" not in md and "±" not in md and "ddof" not in md and "One seed per configuration" in md
    tex = written["tex"].read_text()
    assert tex.count(r"\textbf{90.00}") == 8 and tex.count(r"\underline{85.00}") == 8
    marks = pd.read_csv(written["csv"])["accuracy.mark"].fillna("").tolist()
    assert marks == ["best", "best", "second", "second", ""]


def _tabulars(tex):
    return re.findall(r"\\begin\{tabular\}\{([lcr]+)\}\n(.*?)\\end\{tabular\}", tex, flags=re.S)


def test_latex_is_balanced_booktabs_with_one_row_per_configuration(tmp_path):
    out = experiment(tmp_path, "modules", "rafdb", all_trials("modules", "rafdb", lambda r, s: 0.8 + r / 100))
    tex = render_experiment(out)["tex"].read_text()
    assert tex.count(r"\begin{tabular}") == tex.count(r"\end{tabular}") == 1
    assert tex.count(r"\begin{table}") == tex.count(r"\end{table}") == 1
    assert tex.count("{") == tex.count("}")
    (spec, body), = _tabulars(tex)
    lines = body.strip().splitlines()
    assert lines[0] == r"\toprule" and lines[2] == r"\midrule" and lines[-1] == r"\bottomrule"
    rows = [line for line in lines[3:-1] if line != r"\midrule"]
    assert len(rows) == 18 and lines[3:-1].count(r"\midrule") == 1  # one rule between the backbones
    for line in [lines[1], *rows]:
        assert line.endswith(r"\\") and len(re.findall(r"(?<!\\)&", line)) == len(spec) - 1
    # Paper columns beside ours: Table 5's first ResNet18 row and the ARM full model.
    assert rows[0].startswith("resnet18 &") and "85.06 & 78.36 & 75.93 & 76.92" in rows[0]
    assert rows[-1].count(r"\checkmark") == 4 and rows[-1].endswith(r"92.44 & 89.18 & 86.46 & 87.66 \\")


def test_beta_grid_has_the_long_table_and_the_alpha_beta_grid(tmp_path):
    out = experiment(tmp_path, "beta", "rafdb", all_trials("beta", "rafdb", lambda r, s: 0.8 + r / 1000))
    written = render_experiment(out)
    (_, long), (grid_spec, grid) = _tabulars(written["tex"].read_text())
    assert len([row for row in long.splitlines() if row.endswith(r"\\")]) == 1 + 16
    assert grid_spec == "lrrrr" and len([row for row in grid.splitlines() if row.endswith(r"\\")]) == 1 + 4
    assert r"$\beta$ \textbackslash{} $\alpha$ & 1 & 3 & 5 & 10" in grid
    assert written["beta_heatmap"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_errored_trial_is_rendered_and_marked_by_the_report_command(tmp_path):
    from sspa_ray.cli.main import cli

    records = all_trials("modules", "synthetic", lambda r, s: 0.6 + r / 100)
    records[3] = record("synthetic", load_ablation("modules").trials("synthetic")[3].overrides, row=3, value=0,
                        status="errored", error="RuntimeError: CUDA out of memory\n  traceback ...")
    out = experiment(tmp_path, "modules", "synthetic", records)
    result = CliRunner().invoke(cli, ["report", str(out)])
    assert result.exit_code == 0, result.output
    errored = [line for line in result.output.splitlines() if "| errored |" in line]
    assert len(errored) == 1 and errored[0].startswith("|  | ✓ |  | ✓ |  | errored | errored |")
    assert errored[0].endswith("| 1 errored |")
    assert "Failed trial: Backbone small, SSM + MoE, seed 0: errored: RuntimeError: CUDA out of memory" in result.output
    table = pd.read_csv(out / "table.csv")
    assert len(table) == 9 and table["errored"].tolist() == [0, 0, 0, 1, 0, 0, 0, 0, 0]
    assert (out / "table.tex").is_file() and (out / "modules.png").is_file()
    assert "Paper" not in result.output  # the paper has no synthetic numbers

    latex = CliRunner().invoke(cli, ["report", str(out), "--format", "latex"])
    assert latex.exit_code == 0 and latex.output.startswith("% Generated by sspa-ray")


def test_report_on_a_directory_without_results_is_a_one_line_error(tmp_path):
    from sspa_ray.cli.main import cli

    result = CliRunner().invoke(cli, ["report", str(tmp_path)])
    assert result.exit_code == 2
    assert result.output.strip().count("\n") == 0 and "no results.parquet" in result.output


def test_best_epoch_metrics_are_labelled_as_selected_on_the_test_set(tmp_path):
    out = experiment(tmp_path, "experts", "synthetic", all_trials("experts", "synthetic", lambda r, s: 0.5))
    written = render_experiment(out, formats=("md", "parquet"), metric="best")
    md = written["md"].read_text()
    assert written["md"].name == "table_best.md" and "Acc. (best epoch)" in md
    assert "### Number of experts k (Table 6) (best epoch, chosen by test-set accuracy)" in md
    assert "each trial's epoch of highest accuracy on the test set" in md and "| **51.00** |" in md
    assert pd.read_parquet(written["parquet"])["accuracy.mean_pct"].tolist() == [51.0] * 5
    assert not (out / "table.md").exists()
    assert "claims (best epoch, chosen by test-set accuracy)" in (out / "claims_best.md").read_text().splitlines()[0]
    # table_best.tex has a label and caption of its own, so both tables fit in one document.
    best_tex = render_experiment(out, formats=("tex",), metric="best")["tex"].read_text()
    tex = render_experiment(out, formats=("tex",))["tex"].read_text()
    assert r"\label{tab:experts_best}" in best_tex and r"\label{tab:experts}" in tex
    caption = re.compile(r"\\caption\{(.*)\}")
    assert caption.search(best_tex)[1] == caption.search(tex)[1] + " (best epoch, chosen by test-set accuracy)"


SIZES = {"size.target": 1000.0, "size.aux": 2299.0, "size.test": 600.0}


def test_every_output_names_its_data_overrides_seeds_schedule_and_code(tmp_path):
    sets = {"train.epochs": 4}
    spec = load_ablation("modules")
    records = [record("synthetic", t.overrides, row=t.row, seed=t.overrides["train.seed"],
                      value=0.6 + t.row / 100 + (t.row + 1) * t.overrides["train.seed"] / 1000, extra=SIZES)
               for t in spec.trials("synthetic", sets, 3)]
    out = experiment(tmp_path, "modules", "synthetic", records, seeds=3, overrides=sets)
    written = render_experiment(out)
    line = ("target synthetic (1000 train, 600 test images); aux affectnet (2299 train images, data.aux_ratio 0.1); "
            "--set train.epochs=4; seeds 0, 1, 2; 4 epochs (2 of selection); sspa-ray 0.1.0, git abcdef12; "
            "run 2026-12-01, resumed 2026-12-02")
    assert written["md"].read_text().startswith(f"Provenance: {line}.\n")
    assert f"% Provenance: {line}." in written["tex"].read_text().splitlines()[1]
    assert json.loads(written["provenance"].read_text())["line"] == line  # beside table.csv and claims.csv
    claims = (out / "claims.md").read_text()
    assert f"Provenance: {line}." in claims
    # The paper's numbers are RAF-DB's: kept beside the claims, marked, and said not to be like-for-like.
    assert claims.count(" † |") == sum(len(c.metrics) for c in spec.claims)
    assert "† Not a like-for-like comparison: the paper's numbers are RAF-DB's" in claims
    assert pd.read_csv(out / "claims.csv")["paper_differs"].str.contains("target is synthetic").all()


@pytest.mark.parametrize("sets, label", [({}, "DCJT (approx. labels, 100% aux)"),
                                         ({"dcjt.aux_labels": "dcjt_list.txt"}, "DCJT (published labels, 100% aux)")])
def test_the_dcjt_row_says_whether_it_read_dcjts_published_list(tmp_path, sets, label):
    # The preset's label names the approximation; results whose dcjt.aux_labels is set name the list instead.
    spec = load_ablation("strategies")
    records = [record("rafdb", t.overrides, row=t.row, value=0.8) for t in spec.trials("rafdb", sets)]
    out = experiment(tmp_path, "strategies", "rafdb", records, overrides=sets)
    written = render_experiment(out)
    labels = pd.read_csv(written["csv"])["label"].tolist()
    assert {name for name in labels if "DCJT" in name} == {label}  # the row of each backbone
    better = pd.read_csv(out / "claims.csv")["better"]
    assert {name for name in better if "DCJT" in name} == {label}  # the claims name the row alike


@pytest.mark.parametrize("sets, marked", [({}, False), ({"train.epochs": 2}, True)])
def test_claims_paper_numbers_follow_the_reference_columns_rule(tmp_path, sets, marked):
    spec = load_ablation("modules")
    records = [record("rafdb", t.overrides, row=t.row, value=0.8 + t.row / 100) for t in spec.trials("rafdb", sets)]
    out = experiment(tmp_path, "modules", "rafdb", records, overrides=sets)
    written = render_experiment(out)
    claims = (out / "claims.md").read_text()
    # The claims keep the paper's numbers, marked where the run is not the paper's.
    assert f"| resnet18: 86.76 vs 86.53{' †' if marked else ''} | " in claims
    assert ("†" in claims) == marked
    # The table drops its reference numbers for the same rows, for the same reason.
    assert pd.read_csv(written["csv"])["paper.accuracy_pct"].isna().all() == marked
    if marked:
        assert "these rows ran another configuration than the paper's: train.epochs 2 (paper 80)" in claims


def test_tune_experiment_is_a_table_sorted_by_its_metric(tmp_path):
    rows = [record("synthetic", {"pam.alpha": alpha}, row=-1, value=value, status=status)
            for alpha, value, status in [(1.0, 0.70, "completed"), (3.0, 0.90, "completed"),
                                         (5.0, 0.80, "stopped"), (10.0, 0.0, "errored")]]
    out = experiment(tmp_path, None, "synthetic", rows, kind="tune", name="alpha")
    md = render_experiment(out)["md"].read_text()
    lines = [line for line in md.splitlines() if line.startswith("| ")]
    assert lines[0].startswith("| α | Macro-F1 |")
    assert [line.split(" | ")[0] for line in lines[1:]] == ["| 3", "| 5", "| 1", "| 10"]
    assert lines[2].endswith("| 1 stopped |") and lines[4].endswith("| 1 errored |")
    assert "Sorted by macro_f1" in md


def test_ratio_plot_and_per_class_recall_are_written(tmp_path):
    recall = {f"recall.{c}": 0.5 for c in ("anger", "disgust", "fear", "happiness", "neutral", "sadness", "surprise")}
    spec = load_ablation("aux_ratio")
    out = experiment(tmp_path, "aux_ratio", "rafdb",
                     [record("rafdb", t.overrides, row=t.row, value=0.8, extra=recall) for t in spec.trials("rafdb")])
    assert render_experiment(out)["aux_ratio"].read_bytes()[:4] == b"\x89PNG"
    spec = load_ablation("modules")
    out = experiment(tmp_path, "modules", "synthetic",
                     [record("synthetic", t.overrides, row=t.row, value=0.8, extra=recall) for t in spec.trials("synthetic")],
                     name="modules")
    assert render_experiment(out)["modules_per_class_recall"].read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("preset, sets, kept", [
    ("aux_ratio", {"data.aux_ratio": 0.2}, 0),          # every row becomes 20%: no 0% number may stay
    ("experts", {"moe.experts": 5}, 0),                 # k = 5 everywhere: not k = 1's 91.34
    ("modules", {"data.aux_ratio": 0.2}, 0),            # Table 5 ran 10%
    ("modules", {"train.num_threads": 2}, 18),          # speed only: the paper's numbers stay
])
def test_paper_numbers_are_matched_on_the_configuration_not_the_row(tmp_path, preset, sets, kept):
    spec = load_ablation(preset)
    records = [record("rafdb", {**t.overrides}, row=t.row, value=0.8) for t in spec.trials("rafdb", sets)]
    out = experiment(tmp_path, preset, "rafdb", records, overrides=sets)
    written = render_experiment(out)
    table = pd.read_csv(written["csv"])
    assert table["paper.accuracy_pct"].notna().sum() == kept
    md = written["md"].read_text()
    assert ("ran another configuration than the paper's" in md) == (kept == 0)
    if preset == "experts":
        assert "91.34" not in md and "moe.experts 5 (paper 1)" in md


def test_tune_table_notes_carry_optuna_parameter_importance(tmp_path):
    # The metric follows pam.alpha and ignores train.lr: alpha must rank first.
    records = [record("synthetic", {"pam.alpha": a, "train.lr": lr}, row=-1, value=0.5 + a / 100)
               for a in (1.0, 2.0, 3.0, 4.0) for lr in (0.01, 0.05)]
    out = experiment(tmp_path, None, "synthetic", records, kind="tune")
    md = render_experiment(out)["md"].read_text()
    note = next(line for line in md.splitlines() if "Parameter importance" in line)
    assert note.index("pam.alpha") < note.index("train.lr")


def test_error_bars_are_the_tables_intervals_and_the_legend_says_so():
    from sspa_ray.report.aggregate import Group, Stat
    from sspa_ray.report.plots import error_bar_title, mean_and_bar

    three = Group(row=0, config={}, stats={"accuracy": Stat((0.80, 0.82, 0.84), (0, 1, 2))})
    two = Group(row=1, config={}, stats={"accuracy": Stat((0.70, 0.72), (0, 1))})
    one = Group(row=2, config={}, stats={"accuracy": Stat((0.70,), (0,))})
    mean, below, above = mean_and_bar(three, "accuracy")
    # The cell of test_paired_test_holm_and_ci_match_scipy_on_hand_made_numbers: 82.00 [77.03, 86.97].
    assert (round(mean - below, 2), round(mean + above, 2)) == (77.03, 86.97)
    assert mean_and_bar(two, "accuracy")[1:] == pytest.approx((100 * stats.tstd([0.70, 0.72]),) * 2)
    assert all(math.isnan(v) for v in mean_and_bar(one, "accuracy")[1:])  # one seed: no bar at all
    assert error_bar_title([three, two], ["accuracy"]) == "error bars: 95% CI of the mean (n ≥ 3); ± std (n = 2)"
    assert error_bar_title([one], ["accuracy"]) == "one seed: no error bars"


# ---- report.html ------------------------------------------------------------------------------

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# What report.html of the fixture below must show: the table, the claims, two per-class tables, the trials.
PAGE_TABLES = ["Contribution of each module (Table 5)", "The paper's claims", "Test recall per class (%), final epoch",
               "Share of each aux class (by its given label) that SSM kept at the end of selection (%)", "Trials"]
PAGE_IMAGES = ["modules.png", "modules_per_class_recall.png", "selection.png", "selection_gallery.png"]


@pytest.fixture
def modules_experiment(tmp_path, monkeypatch):
    """A 3-seed modules experiment on a small synthetic benchmark, with trial folders that hold the
    selection.csv the gallery draws from, as an experiment with the default --storage leaves them."""
    from sspa_ray.data import read_listing, synthetic
    from sspa_ray.labels import CLASSES

    monkeypatch.setenv("SSPA_CACHE_DIR", str(tmp_path / "cache"))
    sets = {"data.synthetic_scale": 0.02, "train.epochs": 4}
    per_class = {**{f"recall.{c}": 0.3 + i / 10 for i, c in enumerate(CLASSES)},
                 **{f"kept.{c}": 0.9 - i / 10 for i, c in enumerate(CLASSES)}}
    history = {"history.clean_share": [1.0, 0.7, 0.6, 0.6], "history.selection_precision": [0.7, 0.8, 0.85, 0.86],
               "history.selection_recall": [1.0, 0.8, 0.7, 0.7], "aux_base_rate": 0.707}
    records = []
    for t in load_ablation("modules").trials("synthetic", sets, 3):
        seed = t.overrides["train.seed"]
        records.append(record("synthetic", t.overrides, row=t.row, seed=seed, value=0.6 + t.row / 100 + (t.row + 1) * seed / 300,
                              extra={**SIZES, **per_class, **history, "trial_dir": f"modules-row{t.row}-s{seed}"}))
    storage = tmp_path / "exp" / "ray" / "exp"
    out = experiment(tmp_path, "modules", "synthetic", records, seeds=3, overrides=sets, experiment_path=storage)
    root = synthetic.ensure(0, 0.02, progress=False)
    listing = read_listing("affectnet", "train", root)
    lines = ["path,source,label,clean"] + [f"{path},aux,{CLASSES[label]},{i % 2}"
                                           for i, (path, label) in enumerate(zip(listing.paths, listing.labels, strict=True))]
    for r in records:
        (storage / r["trial_dir"]).mkdir(parents=True)
        (storage / r["trial_dir"] / "selection.csv").write_text("\n".join(lines) + "\n")
    return out


def test_report_html_is_one_self_contained_page_and_the_report_command_rewrites_it(modules_experiment):
    from sspa_ray.cli.main import cli

    out = modules_experiment
    page = render_experiment(out)["html"].read_text()
    images = re.findall(r'<img src="([^"]*)" alt="([^"]*)"', page)
    assert [alt for _, alt in images] == PAGE_IMAGES
    assert all(src.startswith("data:image/png;base64,") for src, _ in images)
    assert [html.unescape(c) for c in re.findall(r"<caption>(.*?)</caption>", page)] == PAGE_TABLES
    assert not re.search(r'(src|href)="(https?:|//)', page) and "<link" not in page and "<script" not in page
    assert "Provenance: target synthetic (1000 train, 600 test images)" in page and "seeds 0, 1, 2" in page
    assert "<strong>holds</strong>" in page or "<strong>inconclusive</strong>" in page
    links = re.findall(r'<a href="(ray/exp/[^"]+)/">', page)
    assert len(links) == 27 and all((out / link).is_dir() for link in links)
    (out / "report.html").unlink()
    result = CliRunner().invoke(cli, ["report", str(out)])
    assert result.exit_code == 0, result.output
    assert (out / "report.html").read_text().count("<img ") == len(PAGE_IMAGES)


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")
def test_report_html_opens_in_headless_chromium_with_every_image_loaded(modules_experiment, tmp_path):
    # A page beside report.html loads it in a frame and writes what it finds into its own DOM, which
    # chromium --dump-dom prints once the frame and its images have loaded.
    render_experiment(modules_experiment)
    probe = modules_experiment / "probe.html"
    probe.write_text("""<!doctype html><html><body><pre id="result">not loaded</pre>
<iframe id="page" src="report.html" style="width:1200px;height:900px"></iframe>
<script>
document.getElementById("page").addEventListener("load", () => {
  const doc = document.getElementById("page").contentDocument;
  const images = [...doc.images].map(i => ({alt: i.alt, width: i.naturalWidth, complete: i.complete}));
  const tables = [...doc.querySelectorAll("table")].map(t => t.caption ? t.caption.textContent : "");
  document.getElementById("result").textContent = JSON.stringify({images, tables, title: doc.title});
});
</script></body></html>""")
    done = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={tmp_path / 'chromium'}",
                           "--allow-file-access-from-files", "--virtual-time-budget=10000", "--dump-dom", probe.as_uri()],
                          capture_output=True, text=True, timeout=180)
    found = re.search(r'<pre id="result">(.*?)</pre>', done.stdout, flags=re.S)
    assert found, done.stderr[-2000:]
    seen = json.loads(html.unescape(found[1]))
    assert [i["alt"] for i in seen["images"]] == PAGE_IMAGES
    assert all(i["complete"] and i["width"] > 0 for i in seen["images"]), seen["images"]
    assert seen["tables"] == PAGE_TABLES and seen["title"] == "Contribution of each module (Table 5)"


def test_paper_suite_renders_one_report_page_with_a_part_per_table(tmp_path):
    from sspa_ray.specs.suite import feeds_text, paper_suite

    suite = paper_suite("synthetic")
    records = [{**record("synthetic", t.overrides, row=-1, value=0.7 + len(t.feeds) / 100, extra=SIZES),
                "feeds": feeds_text(t.feeds), "trial_dir": f"trial-{i}"} for i, t in enumerate(suite.trials("synthetic"))]
    out = experiment(tmp_path, None, "synthetic", records)
    (out / "spec.yaml").write_text(suite.text())
    written = render_experiment(out)
    page = written["html"].read_text()
    assert re.findall(r'<section id="(table_\d)">', page) == list(suite.tables)
    pngs = {path.name for path in written.values() if path.suffix == ".png"}
    assert "aux_share.png" in pngs and len(pngs) == 6  # Tables 5-9 have a plot each, and one spans Tables 8 and 9
    assert page.count("<img ") == sum(path.suffix == ".png" for path in written.values())
    assert (out / "table.md").read_text().startswith("Provenance: target synthetic (1000 train, 600 test images)")
    for table in suite.tables:
        assert (out / table / "table.md").read_text().startswith("Provenance: ")
        assert (out / table / "provenance.json").is_file() and (out / table / "claims.md").is_file()
    # Each trial links to its folder and names the table rows it fills.
    assert "table_3: " in page and page.count("<tr><td>trial-") == len(records)


def test_an_experiment_without_experiment_json_says_what_was_not_recorded(tmp_path):
    # Rendered from results.parquet alone (trials without sizes): no claim of "no --set", no code or date.
    out = experiment(tmp_path, "experts", "synthetic", all_trials("experts", "synthetic", lambda r, s: 0.5))
    (out / "experiment.json").unlink()
    first = render_experiment(out)["md"].read_text().splitlines()[0]
    assert first.startswith("Provenance: target synthetic (sizes not recorded); ")
    assert "; --set not recorded; " in first and "no --set" not in first
    assert first.endswith("; code not recorded; date not recorded.")


def test_importance_of_a_sweep_whose_best_tenth_ties_with_the_worst_says_why_there_is_none(tmp_path):
    # One configuration of 20 is better; the best 10% (two) reach down to the value all the others
    # share, so Optuna's PED-ANOVA would warn "Target and region quantiles select the same set of
    # trials" and rank every key 0.
    records = [record("synthetic", {"pam.alpha": a}, row=-1, value=0.6 if a == 1 else 0.5) for a in range(1, 21)]
    out = experiment(tmp_path, None, "synthetic", records, kind="tune")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning reaches the terminal
        md = render_experiment(out)["md"].read_text()
    assert ("Parameter importance for macro_f1: none; the best 10% of the 20 configurations are no better than "
            "the worst (0.5), so no key sets them apart.") in md
