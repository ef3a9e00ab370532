"""The identity-pretrained backbone of the synthetic benchmark: cache, determinism, loading, horizon."""

import dataclasses
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from sspa_ray.config import SYNTHETIC_PRETRAINED
from sspa_ray.data import synthetic
from sspa_ray.defaults import horizon_warning, make_config
from sspa_ray.engine import fit, pretrain
from sspa_ray.errors import ConfigError
from sspa_ray.model import build_model

TINY = pretrain.Recipe(image_size=16, identities=6, per_identity=5, held_back=1, epochs=1, batch_size=8)


def test_identity_faces_vary_expression_within_a_person_and_are_deterministic():
    images, identity = synthetic.identity_faces(3, identities=4, per_identity=6, size=16)
    again, _ = synthetic.identity_faces(3, identities=4, per_identity=6, size=16)
    assert images.shape == (24, 16, 16, 3) and images.dtype == np.uint8
    assert np.array_equal(images, again)
    assert np.bincount(identity).tolist() == [6] * 4
    # No two images of one person are the same picture: the expression (and pose) varies.
    person = images[identity == 0].reshape(6, -1).astype(int)
    assert min(np.abs(person[i] - person[j]).sum() for i in range(6) for j in range(i + 1, 6)) > 0


def test_pretrain_is_deterministic_and_loads_as_a_backbone(tmp_path):
    a = pretrain.pretrain(TINY, tmp_path / "a.pt", progress=False)
    pretrain.pretrain(TINY, tmp_path / "b.pt", progress=False)
    assert (tmp_path / "a.pt").read_bytes() == (tmp_path / "b.pt").read_bytes()
    first = torch.load(tmp_path / "a.pt", weights_only=True)
    second = torch.load(tmp_path / "b.pt", weights_only=True)
    assert first["state_dict"].keys() == second["state_dict"].keys()
    assert all(torch.equal(first["state_dict"][k], second["state_dict"][k]) for k in first["state_dict"])
    assert a["task"] == "identity" and 0.0 <= a["held_back_accuracy"] <= 1.0 and a["held_back_images"] == 6
    # The file goes through the ordinary model.pretrained loader.
    cfg = make_config("synthetic", {"data.image_size": 16, "model.pretrained": str(tmp_path / "a.pt")})
    model = build_model(cfg)
    loaded = model.backbone.state_dict()
    assert all(torch.equal(loaded[k], first["state_dict"][k]) for k in first["state_dict"])


# A process that trains says so on stderr ("pretraining small on 6 synthetic face identities ...",
# its progress line off a terminal); one that finds the file in the cache prints nothing there.
_BUILD = """
from sspa_ray.engine import pretrain
recipe = pretrain.Recipe(image_size=16, identities=6, per_identity=5, held_back=1, epochs=1, batch_size=8)
print(pretrain.ensure(recipe, progress=True))
"""
TRAINED = "pretraining small on 6 synthetic face identities"


def test_cache_is_built_once_under_concurrency_and_rebuilt_when_the_recipe_changes(tmp_path):
    env = dict(os.environ, SSPA_CACHE_DIR=str(tmp_path / "cache"), OMP_NUM_THREADS="1")
    procs = [subprocess.Popen([sys.executable, "-c", _BUILD], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(3)]
    outputs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert sorted(TRAINED in err for _, err in outputs) == [False, False, True]  # one process trained, two waited
    assert len({out.strip() for out, _ in outputs}) == 1
    built = sorted((tmp_path / "cache" / "pretrained").glob("*.pt"))
    assert len(built) == 1 and not list((tmp_path / "cache" / "pretrained").glob(".*tmp*"))
    # Any input of the recipe is part of the key: another seed or more epochs is another file.
    for change in ({"seed": 1}, {"epochs": 2}):
        assert pretrain.cached_path(dataclasses.replace(TINY, **change)) != pretrain.cached_path(TINY)
    changed = subprocess.run([sys.executable, "-c", _BUILD.replace("epochs=1", "epochs=2")], env=env,
                             capture_output=True, text=True, timeout=300)
    assert changed.returncode == 0 and TRAINED in changed.stderr
    again = subprocess.run([sys.executable, "-c", _BUILD], env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and TRAINED not in again.stderr and again.stdout == outputs[0][0]
    assert len(list((tmp_path / "cache" / "pretrained").glob("*.pt"))) == 2


def test_synthetic_default_is_the_pretrained_backbone_and_none_trains_from_scratch(tmp_path, monkeypatch):
    monkeypatch.setenv("SSPA_CACHE_DIR", str(tmp_path / "cache"))
    cfg = make_config("synthetic", {"data.image_size": 16, "data.synthetic_scale": 0.05, "train.epochs": 1,
                                    "train.selection_epochs": 1, "train.batch_size": 16, "train.num_threads": 1})
    assert cfg.model.pretrained == SYNTHETIC_PRETRAINED
    assert make_config("synthetic", {"model.pretrained": "none"}).model.pretrained is None
    # Put a tiny pretraining where the default recipe's file belongs, so the test stays fast.
    target = pretrain.cached_path(pretrain.recipe_for(cfg))
    pretrain.pretrain(TINY, target, progress=False)
    resolved = pretrain.resolved(cfg, progress=False)
    assert resolved.model.pretrained == str(target) and cfg.model.pretrained == SYNTHETIC_PRETRAINED
    weights = torch.load(target, weights_only=True)["state_dict"]
    assert torch.equal(build_model(resolved).backbone.state_dict()["0.weight"], weights["0.weight"])
    metrics = fit(cfg, tmp_path / "run", log=lambda line: None)
    assert metrics["epochs_done"] == 1
    with pytest.raises(ConfigError, match="model.pretrained=synthetic-faces supports model.backbone"):
        pretrain.recipe_for(make_config("synthetic", {"model.backbone": "arm", "data.image_size": 224}))


def test_horizon_warning_names_the_momentum_that_restores_it(tmp_path):
    assert horizon_warning(make_config("synthetic")) is None  # 0.7^6 = 0.12
    assert horizon_warning(make_config("rafdb")) is None      # 0.95^40 = 0.13
    assert make_config("synthetic").ssm.momentum ** make_config("synthetic").train.selection_epochs <= 0.25
    line = horizon_warning(make_config("synthetic", {"ssm.momentum": 0.95}))
    assert line is not None and "\n" not in line
    assert "0.74" in line and "ssm.momentum=0.71" in line  # 0.95^6; 0.1285^(1/6)
    # It says what it knows before training (how far the thresholds move), not how many labels SSM will keep.
    assert "the thresholds stay near 1/C, so SSM selects less strictly than in the paper" in line
    assert "every label" not in line
    assert horizon_warning(make_config("synthetic", {"ssm.momentum": 0.95, "modules.ssm": False,
                                                     "modules.pam": False})) is None
    # A real run prints it once, before its first epoch.
    lines = []
    cfg = make_config("synthetic", {"ssm.momentum": 0.95, "model.pretrained": None, "data.image_size": 16,
                                    "data.synthetic_scale": 0.05, "train.epochs": 1, "train.selection_epochs": 1,
                                    "train.batch_size": 16, "train.num_threads": 1})
    fit(cfg, tmp_path / "run", log=lines.append)
    warnings = [i for i, line in enumerate(lines) if line.startswith("warning: ssm.momentum")]
    assert len(warnings) == 1 and warnings[0] < min(i for i, line in enumerate(lines) if line.startswith("epoch "))
    # An experiment's driver prints each distinct warning once, before Ray starts.
    from sspa_ray.orchestration.plan import ExperimentPlan, Resources
    from sspa_ray.specs.ablation import load_ablation

    plan = ExperimentPlan.for_ablation(load_ablation("modules"), target="synthetic", sets={"ssm.momentum": 0.95},
                                       seeds=2, out=tmp_path / "exp", name=None, storage=None, resources=Resources())
    assert len(plan.notes) == 1 and "ssm.momentum=0.71" in plan.notes[0]


def test_cli_prints_the_horizon_warning_and_writes_pretrained_files(tmp_path):
    env = dict(os.environ, SSPA_CACHE_DIR=str(tmp_path / "cache"))
    sspa = [sys.executable, "-m", "sspa_ray.cli.main"]
    proc = subprocess.run(sspa + ["keys", "--target", "synthetic"], capture_output=True, text=True, env=env)
    keys = {line.split()[0]: line.split()[1] for line in proc.stdout.splitlines()[1:]}
    assert keys["model.pretrained"] == SYNTHETIC_PRETRAINED
    assert float(keys["ssm.momentum"]) ** int(keys["train.selection_epochs"]) <= 0.25
    out = tmp_path / "exists.pt"
    out.write_text("")
    proc = subprocess.run(sspa + ["data", "pretrain", "--out", str(out)], capture_output=True, text=True, env=env)
    assert proc.returncode == 2 and "already exists" in proc.stderr
