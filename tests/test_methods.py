"""The method seam: the registry, SCN's parts on hand-made tensors, and SCN trained end to end."""

import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from test_engine import BASE, easy_data, without_timing

from sspa_ray.cli.main import cli
from sspa_ray.config import MODULES, ModulesConfig
from sspa_ray.defaults import make_config
from sspa_ray.engine import fit
from sspa_ray.engine.checkpoint import load_checkpoint
from sspa_ray.engine.loop import Trainer
from sspa_ray.engine.methods.scn import high_group, rank_loss, relabel_epoch, relabel_targets
from sspa_ray.errors import ConfigError


def test_the_module_toggles_are_defined_once():
    assert list(MODULES) == [f"modules.{f}" for f in ModulesConfig.__dataclass_fields__]


def test_keys_lists_the_method_and_scn_keys_and_a_typo_gets_a_hint():
    out = CliRunner().invoke(cli, ["keys"]).output
    line = next(line for line in out.splitlines() if line.startswith("method.name"))
    assert "sspa_jt" in line and "scn" in line
    assert {"scn.rank_margin", "scn.high_share", "scn.relabel_margin", "scn.relabel_epoch", "scn.relabel_scope",
            "scn.gamma"} <= {line.split()[0] for line in out.splitlines() if line.startswith("scn.")}
    with pytest.raises(ConfigError, match="did you mean scn.relabel_margin"):
        make_config("synthetic", {"scn.relabel_margn": 0.3})
    with pytest.raises(ConfigError, match="one of sspa_jt, scn"):
        make_config("synthetic", {"method.name": "scm"})


def test_rank_loss_by_hand():
    # high_share 0.5 of 4: the two largest {0.55, 0.52} against {0.50, 0.48}.
    alpha = torch.tensor([0.55, 0.50, 0.52, 0.48], requires_grad=True)
    loss = rank_loss(alpha, 0.5, 0.15)
    assert loss.item() == pytest.approx(0.15 - ((0.55 + 0.52) / 2 - (0.50 + 0.48) / 2))  # 0.105
    loss.backward()
    assert alpha.grad.tolist() == pytest.approx([-0.5, 0.5, -0.5, 0.5])
    # floor(0.7 * 10) = 7 high: mean 0.6 against mean 0.35 / 3; the gap exceeds the margin, so no loss.
    wide = torch.tensor([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.05])
    assert high_group(wide, 0.7).tolist() == [True] * 7 + [False] * 3
    assert rank_loss(wide, 0.7, 0.15).item() == 0.0
    assert rank_loss(wide, 0.7, 0.6).item() == pytest.approx(0.6 - (0.6 - 0.35 / 3))


def test_relabel_rule_by_hand():
    logits = torch.tensor([[2.0, 0, 0, 0, 0, 0, 0],    # labelled 1: p(0) - p(1) = (e^2 - 1) / (e^2 + 6) = 0.477
                           [0.1, 0, 0, 0, 0, 0, 0],    # labelled 0, its argmax: kept
                           [0.0, 0.9, 0, 0, 0, 0, 0],  # labelled 0: (e^0.9 - 1) / (e^0.9 + 6) = 0.170 < 0.2: kept
                           [0.0, 1.2, 0, 0, 0, 0, 0]])  # labelled 0: (e^1.2 - 1) / (e^1.2 + 6) = 0.237: to 1
    labels = torch.tensor([1, 0, 0, 0])
    by_hand = [(math.exp(a) - 1) / (math.exp(a) + 6) for a in (2.0, 0.9, 1.2)]
    assert by_hand[0] > 0.2 > by_hand[1] and by_hand[2] > 0.2
    assert relabel_targets(logits, labels, 0.2).tolist() == [0, -1, -1, 1]
    assert relabel_targets(logits, labels, 0.5).tolist() == [-1, -1, -1, -1]


@pytest.mark.parametrize("epochs,first", [(70, 10), (12, 2), (80, 11), (1, 1), (35, 5)])
def test_relabelling_starts_at_the_reference_share_of_the_schedule(epochs, first):
    assert relabel_epoch(make_config("synthetic", {"train.epochs": epochs})) == first
    assert relabel_epoch(make_config("synthetic", {"train.epochs": epochs, "scn.relabel_epoch": 3})) == 3


SCN = {**BASE, "method.name": "scn", "scn.relabel_epoch": 2}


def test_scn_trains_relabels_and_measures_its_relabelling_against_the_truth(tmp_path):
    cfg = make_config("synthetic", SCN)
    trainer = Trainer(cfg, tmp_path, data=easy_data(), log=lambda _: None)
    metrics = trainer.run()
    assert [r["stage"] for r in metrics["history"]] == ["JT", "RL", "RL", "RL"]
    assert metrics["accuracy"] > 0.5
    relabelled = trainer.method.current.numpy() != trainer.method.labels
    assert relabelled.any() and not relabelled.all()
    record = metrics["relabelling"]
    aux_truth = easy_data().aux_true_labels
    aux_now = trainer.method.current.numpy()[160:]
    changed = aux_now != easy_data().aux_train.labels
    assert record["relabelled_share"] == pytest.approx(changed.mean())
    assert record["relabel_precision"] == pytest.approx((aux_now[changed] == aux_truth[changed]).mean())
    # The aux set's labels are 40% wrong; SCN's relabels are mostly right, and its low groups noisier.
    assert record["relabel_precision"] > 0.6
    assert record["low_importance_noise"] > 1 - record["aux_base_rate"]
    assert all(k in metrics["history"][-1] for k in ("relabel_precision", "relabel_broken", "low_importance_noise"))
    assert not (tmp_path / "selection.csv").exists()


def test_scn_relabels_only_the_low_group_in_the_papers_scope(tmp_path):
    code = fit(make_config("synthetic", SCN), tmp_path / "code", data=easy_data(), log=lambda _: None)
    paper = fit(make_config("synthetic", SCN, {"scn.relabel_scope": "low"}), tmp_path / "paper", data=easy_data(),
                log=lambda _: None)
    assert 0 < paper["relabelling"]["relabelled_share"] < code["relabelling"]["relabelled_share"]


def test_scn_own_recipe_is_adam_with_the_reference_decay_spread_over_the_epochs(tmp_path):
    cfg = make_config("synthetic", SCN, {"method.recipe": "own"})
    trainer = Trainer(cfg, tmp_path, data=easy_data(), log=lambda _: None)
    assert isinstance(trainer.optimizer, torch.optim.Adam) and trainer.schedule_per_epoch
    trainer.run()
    # 0.9^70 of the start after train.epochs = 4 epochs.
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(1e-3 * 0.9**70, rel=1e-6)


RUNNER = """
import sys
sys.path.insert(0, {tests!r})
from test_engine import easy_data
from test_methods import SCN
from sspa_ray.defaults import make_config
from sspa_ray.engine import fit
from sspa_ray.engine.checkpoint import load_checkpoint
fit(make_config("synthetic", SCN), sys.argv[1], data=easy_data(), log=print)
"""


def test_scn_resumes_bit_identically_after_a_sigkill_mid_epoch(tmp_path):
    reference = fit(make_config("synthetic", SCN), tmp_path / "ref", data=easy_data(), log=lambda _: None)
    script = tmp_path / "runner.py"
    script.write_text(RUNNER.format(tests=str(Path(__file__).parent)))
    run = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "SSPA_TEST_KILL_AT": "mid_epoch:3"}
    killed = subprocess.run([sys.executable, str(script), str(run)], env=env, capture_output=True, text=True,
                            timeout=300)
    assert killed.returncode == -9, killed.stderr
    saved = load_checkpoint(run / "checkpoints" / "epoch_0002")["method"]["labels"].numpy()
    data = easy_data()
    assert (saved != np.concatenate([data.target_train.labels, data.aux_train.labels])).any()  # relabelled in epoch 2
    lines = []
    resumed = fit(make_config("synthetic", SCN), run, data=easy_data(), resume=True, log=lines.append)
    assert "resuming from epoch_0002" in lines
    assert without_timing(resumed) == without_timing(reference)
