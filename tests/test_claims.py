"""The paper's claims: schema validation with line numbers, and the judge on hand-made results."""

import pandas as pd
import pytest

from sspa_ray.errors import SpecError
from sspa_ray.outputs import Verdict
from sspa_ray.report.claims import check_claims, judge, write_claims
from sspa_ray.report.provenance import provenance
from sspa_ray.report.significance import paired_p
from sspa_ray.specs.ablation import load_ablation
from sspa_ray.specs.presets import preset_names

PRESET = """\
name: toy
title: Toy table
layout: list
metrics: [accuracy, macro_f1]
rows:
  - {moe.experts: 1}
  - {moe.experts: 2}
  - {moe.experts: 3}
seeds: 1
claims:
  - claim: two experts beat one
    section: "4.5"
    metrics: [accuracy]
    better: 1
    than: 0
  - claim: three experts are the best
    metrics: accuracy
    better: 2
    than: all
  - claim: one expert beats three on macro-F1
    metrics: [macro_f1]
    better: 0
    than: [2]
"""


def spec_file(tmp_path, text=PRESET):
    path = tmp_path / "toy.yaml"
    path.write_text(text)
    return load_ablation(path)


def results(values):
    """values: {row: [(accuracy, macro_f1) per seed]} -> a results.parquet-like frame."""
    records = [{"row": row, "status": "completed", "train.seed": seed, "moe.experts": row + 1,
                "accuracy": acc, "macro_f1": f1}
               for row, per_seed in values.items() for seed, (acc, f1) in enumerate(per_seed)]
    return pd.DataFrame(records)


def test_paired_p_is_ttest_rel_and_none_when_undefined():
    # Differences 0.2, 0.15, 0.15: t = 10 with 2 degrees of freedom.
    assert paired_p([0.9, 0.8, 0.85], [0.7, 0.65, 0.7]) == pytest.approx(0.00985, abs=1e-4)
    assert paired_p([0.5], [0.4]) is None
    assert paired_p([0.5, 0.6], [0.5, 0.6]) is None
    assert paired_p([0.5, 0.6], [0.5]) is None  # not aligned by seed


def test_judge_gives_each_verdict_where_it_is_known():
    better = {0: 0.90, 1: 0.80, 2: 0.85}
    clearly_worse = {0: 0.70, 1: 0.65, 2: 0.70}   # every seed lower: p = 0.0099
    clearly_better = {0: 0.95, 1: 0.86, 2: 0.92}
    noisy = {0: 0.95, 1: 0.70, 2: 0.86}           # mixed signs
    assert judge(better, {1: clearly_worse})[0] == Verdict.HOLDS
    assert judge(better, {1: clearly_better})[0] == Verdict.CONTRADICTED
    assert judge(better, {1: noisy})[0] == Verdict.INCONCLUSIVE
    # A best-of claim holds only against every rival; one significant rival above contradicts it.
    assert judge(better, {1: clearly_worse, 2: noisy})[0] == Verdict.INCONCLUSIVE
    verdict, turning = judge(better, {1: clearly_worse, 2: clearly_better})
    assert verdict == Verdict.CONTRADICTED and turning.rival == 2
    # One seed: the sign alone, no p-value, and the verdict says it is only a sign.
    verdict, turning = judge({0: 0.8}, {1: {0: 0.7}})
    assert verdict == Verdict.SIGN_AS_CLAIMED and turning.p is None and turning.pairs == 1
    assert not verdict.is_tested and verdict.value == "sign only (n=1): as claimed"
    assert judge({0: 0.6}, {1: {0: 0.7}})[0] == Verdict.SIGN_OPPOSITE
    assert judge({0: 0.7}, {1: {0: 0.7}})[0] == Verdict.SIGN_TIED
    # One rival with three seeds and one with a single common seed: the claim is not tested.
    assert judge(better, {1: clearly_worse, 2: {0: 0.5}})[0] == Verdict.SIGN_AS_CLAIMED
    # A row without completed trials cannot be judged.
    assert judge(better, {1: {}})[0] == Verdict.INCONCLUSIVE
    assert judge({}, {1: clearly_worse})[0] == Verdict.INCONCLUSIVE


def test_claims_on_hand_made_results_and_the_files_beside_the_tables(tmp_path):
    spec = spec_file(tmp_path)
    frame = results({
        0: [(0.70, 0.60), (0.72, 0.62), (0.71, 0.61)],
        1: [(0.80, 0.60), (0.83, 0.61), (0.81, 0.59)],   # beats row 0 on every seed
        2: [(0.90, 0.55), (0.70, 0.52), (0.86, 0.53)],   # best on average, noisy against row 1
    })
    verdicts = check_claims(spec, frame, "synthetic")
    assert [(v.claim.text, v.metric, v.verdict) for v in verdicts] == [
        ("two experts beat one", "accuracy", Verdict.HOLDS),
        ("three experts are the best", "accuracy", Verdict.INCONCLUSIVE),
        ("one expert beats three on macro-F1", "macro_f1", Verdict.HOLDS),
    ]
    assert verdicts[1].rival == 1 and verdicts[0].comparison.pairs == 3
    paths = write_claims(spec, verdicts, tmp_path, provenance=provenance(frame, {"target": "synthetic"}))
    md = paths["claims.md"].read_text()
    assert "| two experts beat one (§4.5) | accuracy |" in md and "**holds**" in md and "**inconclusive**" in md
    assert "paired t-test by seed, 3 pairs" in md and "2 hold, 0 contradicted, 1 inconclusive." in md
    assert "Untested" not in md  # three seeds: every verdict was tested
    csv = pd.read_csv(paths["claims.csv"])
    assert list(csv["verdict"]) == [Verdict.HOLDS, Verdict.INCONCLUSIVE, Verdict.HOLDS]
    assert csv["tested"].tolist() == [True, True, True]
    assert csv.loc[0, "ours_better_n"] == 3 and csv.loc[0, "ours_better_mean"] == pytest.approx(0.8133, abs=1e-4)

    # One seed per row: no bare holds / contradicted in either file, and the counts kept apart.
    one_seed_results = results({0: [(0.7, 0.6)], 1: [(0.6, 0.7)], 2: [(0.9, 0.5)]})
    one_seed = check_claims(spec, one_seed_results, "synthetic")
    assert [v.verdict for v in one_seed] == [Verdict.SIGN_OPPOSITE, Verdict.SIGN_AS_CLAIMED, Verdict.SIGN_AS_CLAIMED]
    paths = write_claims(spec, one_seed, tmp_path, provenance=provenance(one_seed_results, {"target": "synthetic"}))
    md = paths["claims.md"].read_text()
    verdict_cells = [line.rsplit(" | ", 1)[1].rstrip(" |") for line in md.splitlines() if line.startswith("| ")][1:]
    assert verdict_cells == ["sign only (n=1): opposite", "sign only (n=1): as claimed", "sign only (n=1): as claimed"]
    assert "**holds**" not in md and "**contradicted**" not in md and "none: one seed, the sign alone" in md
    assert "Tested (paired t-test by seed, p < 0.05): 0 hold, 0 contradicted, 0 inconclusive." in md
    assert "Untested (one seed: the sign alone, not a finding): 2 as claimed, 1 opposite, 0 tied." in md
    csv = pd.read_csv(paths["claims.csv"])
    assert not set(csv["verdict"]) & {"holds", "contradicted"} and csv["tested"].tolist() == [False] * 3


def test_every_preset_lists_claims_with_the_papers_numbers():
    for name in preset_names():
        spec = load_ablation(name)
        assert spec.claims, name
        for claim in spec.claims:
            assert all(m in spec.metrics for m in claim.metrics)
    claim = load_ablation("modules").claims[1]
    assert claim.text == "SSM + fixed D_T beats SSM alone" and (claim.better, claim.than) == (2, (1,))
    verdicts = check_claims(load_ablation("modules"), pd.DataFrame(columns=["row", "status"]), "synthetic")
    # The synthetic target has no paper numbers of its own: RAF-DB's are shown, marked as not like-for-like.
    assert verdicts[1].paper == "resnet18: 86.76 vs 86.53; arm: 90.75 vs 90.29"
    assert verdicts[1].paper_differs == ("the paper's numbers are RAF-DB's, at the paper's settings; "
                                         "this run's target is synthetic")
    assert all(v.verdict == Verdict.INCONCLUSIVE for v in verdicts)


@pytest.mark.parametrize("claims, line, message", [
    ("  - {claim: x, metrics: [accuracy], better: 7, than: 0}\n", 11, r"claims\[0\]\.better: 7 is not a row"),
    ("  - claim: x\n    metrics: [accuracy]\n    better: 0\n    than: [0]\n", 14, r"claims\[0\]\.than: must name other rows"),
    ("  - claim: x\n    metrics: [recall]\n    better: 0\n    than: 1\n", 12, r"claims\[0\]\.metrics: 'recall' is not one"),
    ("  - claim: x\n    metric: [accuracy]\n", 12, r"claims\[0\]\.metric: unknown key"),
    ("  - claim: x\n    metrics: [accuracy]\n    than: 1\n", 11, r"claims\[0\]: missing required key 'better'"),
])
def test_bad_claims_name_the_file_and_line(tmp_path, claims, line, message):
    text = PRESET[: PRESET.index("claims:")] + "claims:\n" + claims
    with pytest.raises(SpecError, match=rf"toy\.yaml:{line}: {message}"):
        spec_file(tmp_path, text)
