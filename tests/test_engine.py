"""The engine end to end: fit on a small easy in-memory dataset, determinism, exact resume after
SIGKILL in a real subprocess, corrupt-checkpoint fallback, DDP with gloo on 2 CPU processes."""

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from sspa_ray.data import JointData, Split
from sspa_ray.data.augment import augment, normalize
from sspa_ray.defaults import make_config
from sspa_ray.engine import TrainingDiverged, TrainingOutOfMemory, fit
from sspa_ray.engine.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from sspa_ray.engine.loop import Trainer
from sspa_ray.engine.metrics import classification_metrics, selection_metrics
from sspa_ray.errors import ConfigError
from sspa_ray.labels import CLASSES
from sspa_ray.outputs import EPOCH_KEYS, EpochRecord

# make test spreads tests over two workers (pytest-xdist, --dist loadgroup); this module's tests share
# module-scoped runs, so they stay together on one worker.
pytestmark = pytest.mark.xdist_group("test_engine")

TESTS = Path(__file__).parent
SIZE = 16


def _split(rng, n, noise=0.0, name="img"):
    """Class c shows a bright band at rows 2c..2c+1; `noise` of the labels are changed."""
    truth = rng.integers(0, 7, n)
    images = rng.integers(0, 90, (n, SIZE, SIZE, 3))
    for c in range(7):
        images[truth == c, 2 * c : 2 * c + 2, :, c % 3] += 150
    shown = truth.copy()
    changed = rng.random(n) < noise
    shown[changed] = (truth[changed] + rng.integers(1, 7, changed.sum())) % 7
    paths = [f"{name}/{i:04d}.png" for i in range(n)]
    return Split(images.astype(np.uint8), shown.astype(np.int64), paths), truth.astype(np.int64)


def easy_data(seed=0, aux=True):
    rng = np.random.default_rng(seed)
    target, _ = _split(rng, 160, name="target")
    aux_split, aux_truth = _split(rng, 160, noise=0.4, name="aux")
    test, _ = _split(rng, 96, name="test")
    return JointData(target, aux_split if aux else None, test, aux_truth if aux else None)


BASE = {
    "data.image_size": SIZE,
    "train.epochs": 4,
    "train.selection_epochs": 2,
    "train.batch_size": 32,
    "train.lr": 0.05,
    "train.num_threads": 1,
    "train.eval_batch_size": 40,
    "model.pretrained": None,  # from scratch: tests/test_pretrain.py covers the pretrained start
}


def config(**overrides):
    return make_config("synthetic", BASE, {k.replace("__", "."): v for k, v in overrides.items()})


def without_timing(metrics):
    out = json.loads(json.dumps(metrics))
    for row in out["history"]:
        row.pop("img_per_s")
    return out


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """One uninterrupted run: its metrics, its files and the run directory."""
    run = tmp_path_factory.mktemp("reference")
    reports = []
    metrics = fit(config(), run, data=easy_data(), report=lambda m, d: reports.append((m, d)), log=lambda _: None)
    return metrics, run, reports


def test_fit_learns_and_writes_the_contracted_files(reference):
    metrics, run, reports = reference
    on_disk = json.loads((run / "metrics.json").read_text())
    assert on_disk == json.loads(json.dumps(metrics))
    for key in ("accuracy", "macro_precision", "macro_recall", "macro_f1"):
        assert 0.0 <= metrics[key] <= 1.0
    assert metrics["accuracy"] > 0.6  # chance is 1/7
    assert metrics["best"]["selected_on"] == "test" and 1 <= metrics["best"]["epoch"] <= 4
    assert metrics["best"]["accuracy"] == max(r["accuracy"] for r in metrics["history"])
    assert set(metrics["per_class"]) == set(CLASSES)
    assert sum(map(sum, metrics["confusion"])) == 96
    assert [r["stage"] for r in metrics["history"]] == ["SS", "SS", "PA", "PA"]
    # Each epoch's record holds the EpochRecord's core keys and no key it does not declare.
    for record in metrics["history"]:
        assert EpochRecord.__required_keys__ <= set(record) <= set(EPOCH_KEYS), sorted(record)
    # SSM picks aux samples that agree with the target standard far above the base rate (0.6).
    sel = metrics["selection"]
    assert sel["precision"] > sel["aux_base_rate"] + 0.2
    assert 0.0 < sel["clean_share"] < 1.0

    rows = (run / "selection.csv").read_text().splitlines()
    assert rows[0] == "path,source,label,clean"
    assert len(rows) == 1 + 160 + 160
    target_rows = [r.split(",") for r in rows[1:161]]
    assert all(r[1] == "target" and r[3] == "1" for r in target_rows)  # D_T fixed clean
    aux_clean = np.array([int(r.split(",")[3]) for r in rows[161:]])
    assert aux_clean.mean() == pytest.approx(sel["clean_share"])

    # report is called after every epoch's checkpoint, which exists when it is called.
    assert [m["epoch"] for m, _ in reports] == [1, 2, 3, 4]
    expected_keys = {"stage", "loss", "clean_share", "img_per_s", "selection_precision", "selection_recall"}
    assert expected_keys <= set(reports[0][0])
    assert reports[-1][1].name == "epoch_0004"
    kept = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert kept == ["epoch_0003", "epoch_0004"]
    state = load_checkpoint(run / "checkpoints" / "epoch_0004")
    assert state["epoch"] == 4 and "data_position" not in state  # the epoch alone says where to resume
    assert {"model", "optimizer", "scheduler", "method", "rng", "history"} <= set(state)
    assert state["method"]["selector"]["thresholds"].shape == (320, 3)


def test_same_seed_gives_the_same_metrics_and_another_seed_does_not(reference, tmp_path):
    again = fit(config(), tmp_path / "a", data=easy_data(), log=lambda _: None)
    assert without_timing(again) == without_timing(reference[0])
    other = fit(config(train__seed=1), tmp_path / "b", data=easy_data(), log=lambda _: None)
    assert [r["loss"] for r in other["history"]] != [r["loss"] for r in reference[0]["history"]]


RUNNER = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {tests!r})
    from test_engine import config, easy_data
    from sspa_ray.engine import fit
    fit(config(), sys.argv[1], data=easy_data(), log=print)
    """
)


@pytest.mark.parametrize(
    "kill_at,resumes_from",
    [("mid_epoch:3", "epoch_0002"), ("checkpoint_write:2", "epoch_0001"), ("stage_switch", "epoch_0002")],
)
def test_sigkill_then_resume_matches_an_uninterrupted_run(reference, tmp_path, kill_at, resumes_from):
    script = tmp_path / "runner.py"
    script.write_text(RUNNER.format(tests=str(TESTS)))
    run = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "SSPA_TEST_KILL_AT": kill_at}
    killed = subprocess.run(
        [sys.executable, str(script), str(run)], env=env, capture_output=True, text=True, timeout=300
    )
    assert killed.returncode == -9, killed.stderr
    lines = []
    resumed = fit(config(), run, data=easy_data(), resume=True, log=lines.append)
    assert f"resuming from {resumes_from}" in lines
    expected, ref_run, _ = reference
    assert without_timing(resumed) == without_timing(expected)
    assert without_timing(json.loads((run / "metrics.json").read_text())) == without_timing(expected)
    assert (run / "selection.csv").read_text() == (ref_run / "selection.csv").read_text()
    final, ref_final = (load_checkpoint(r / "checkpoints" / "epoch_0004") for r in (run, ref_run))
    assert all(torch.equal(final["model"][k], v) for k, v in ref_final["model"].items())
    assert not list((run / "checkpoints").glob(".epoch_*"))  # the torn temporary is cleaned up


def test_a_corrupt_newest_checkpoint_is_reported_and_the_previous_one_used(reference, tmp_path):
    expected = reference[0]
    run = tmp_path / "run"
    fit(config(), run, data=easy_data(), log=lambda _: None)
    newest = run / "checkpoints" / "epoch_0004" / "state.pt"
    blob = bytearray(newest.read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    newest.write_bytes(bytes(blob))
    lines = []
    assert latest_checkpoint(run / "checkpoints", lines.append)[0].name == "epoch_0003"
    assert len(lines) == 1 and "epoch_0004" in lines[0] and "sha256" in lines[0]
    # Resuming falls back to epoch 3 and replays epoch 4 exactly.
    lines = []
    resumed = fit(config(), run, data=easy_data(), resume=True, log=lines.append)
    assert "resuming from epoch_0003" in lines and [line[:9] for line in lines[-1:]] == ["epoch 4/4"]
    assert without_timing(resumed) == without_timing(expected)
    assert load_checkpoint(run / "checkpoints" / "epoch_0004")["epoch"] == 4  # rewritten, valid again


def test_resume_without_checkpoints_starts_over_and_a_finished_run_is_not_retrained(reference, tmp_path):
    expected, ref_run, _ = reference
    lines = []
    again = fit(config(), ref_run, data=easy_data(), resume=True, log=lines.append)
    assert without_timing(again) == without_timing(expected)
    assert not any(line.startswith("epoch ") for line in lines)  # nothing left to train
    lines = []
    fresh = fit(config(train__epochs=1, train__selection_epochs=1), tmp_path / "new", data=easy_data(), resume=True,
                log=lines.append)
    assert fresh["epochs_done"] == 1 and "no valid checkpoint" in lines[0]


def test_resume_refuses_a_different_config(reference, tmp_path):
    _, ref_run, _ = reference
    with pytest.raises(ConfigError, match="pam.alpha"):
        fit(config(pam__alpha=2.0), ref_run, data=easy_data(), resume=True, log=lambda _: None)


def test_resume_refuses_a_checkpoint_of_another_format_in_one_line(reference, tmp_path):
    # No release has shipped, so no earlier format is upgraded (ARCHITECTURE.md, "One format"): a
    # checkpoint whose keys differ from the Trainer's state_dict, or whose config differs, is refused
    # with the fix, never half-loaded.
    _, ref_run, _ = reference
    state = load_checkpoint(ref_run / "checkpoints" / "epoch_0003")
    for name, changed in [("extra", {**state, "data_position": {"epoch": 3, "step": 0}}),
                          ("renamed", {**{k: v for k, v in state.items() if k != "method"}, "selector": {}}),
                          ("padding", {**state, "config": {**state["config"], "data.crop_padding": -1}})]:
        save_checkpoint(tmp_path / name / "checkpoints", 3, changed)
        with pytest.raises(ConfigError) as info:
            fit(config(), tmp_path / name, data=easy_data(), resume=True, log=lambda _: None)
        message = str(info.value)
        assert "\n" not in message
        assert {"extra": "data_position", "renamed": "selector", "padding": "data.crop_padding=-1"}[name] in message


@pytest.mark.parametrize(
    "modules",
    [
        {"modules.ssm": False, "modules.pam": False},
        {"modules.pam": False},
        {"modules.moe": False},
        {"modules.fix_target": False},
    ],
)
def test_module_switches(tmp_path, modules):
    cfg = make_config("synthetic", BASE, {"train.epochs": 2, "train.selection_epochs": 1}, modules)
    trainer = Trainer(cfg, tmp_path, data=easy_data(), log=lambda _: None)
    metrics = trainer.run()
    selector = trainer.method.selector
    clean = selector.clean.numpy()
    assert trainer.model.head.experts == (1 if modules.get("modules.moe") is False else 3)
    if modules.get("modules.ssm") is False:
        assert clean.all() and (selector.thresholds == 1 / 7).all()
    elif modules.get("modules.fix_target") is False:
        assert selector.always_clean is None  # target samples may be dropped too
    else:
        assert clean[:160].all() and not clean[160:].all()
    assert metrics["accuracy"] > 1 / 7


def test_pa_stage_skips_noisy_samples_without_pam_and_mixes_them_with_pam(tmp_path):
    trainer = Trainer(config(modules__pam=False), tmp_path, data=easy_data(), log=lambda _: None)
    clean = np.zeros(trainer.num_samples, dtype=bool)
    clean[:100] = True
    trainer.epoch, trainer.method.clean = 2, clean
    plan = trainer.plan()
    assert plan.partner is None
    assert torch.equal(plan.weight.bool(), torch.from_numpy(clean[plan.ids_host]))
    with_pam = Trainer(config(), tmp_path, data=easy_data(), log=lambda _: None)
    with_pam.epoch, with_pam.method.clean = 2, clean
    plan = with_pam.plan()
    noisy = ~torch.from_numpy(clean[plan.ids_host])
    assert plan.weight.bool().all()  # every batch here has clean samples, so all are trained on
    assert (plan.lam[noisy] < 1).all() and (plan.lam[~noisy] == 1).all()
    partners = torch.gather(plan.ids, 1, plan.partner)
    assert torch.from_numpy(clean)[partners].all()


def test_divergence_raises(tmp_path):
    # A pretrained checkpoint with a NaN weight makes every loss NaN: caught at the end of epoch 1.
    from sspa_ray.model.resnet import resnet18_trunk

    state = resnet18_trunk().state_dict()
    state["conv1.weight"][0, 0, 0, 0] = float("nan")
    torch.save({"state_dict": state}, tmp_path / "nan.pth")
    cfg = config(model__backbone="resnet18", model__pretrained=str(tmp_path / "nan.pth"))
    with pytest.raises(TrainingDiverged) as info:
        fit(cfg, tmp_path / "run", data=easy_data(), log=lambda _: None)
    assert info.value.epoch == 1 and np.isnan(info.value.loss)
    assert not (tmp_path / "run" / "checkpoints").exists()  # nothing is checkpointed after divergence


def test_out_of_memory_names_the_batch_size_and_the_fix(tmp_path, monkeypatch):
    # No GPU here: simulate the allocator failing the way CUDA does, inside a real epoch.
    def exhausted(self, *args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(Trainer, "train_epoch", exhausted)
    with pytest.raises(TrainingOutOfMemory) as info:
        fit(config(), tmp_path / "run", data=easy_data(), log=lambda _: None)
    message = str(info.value)
    assert "train.batch_size=32" in message and "lower train.batch_size" in message
    assert "\n" not in message


def test_data_on_device_budgets_the_trials_gpu_share_and_counts_cached_memory(monkeypatch):
    # No GPU here: the allocator's numbers are mocked, the decision and its log line are real.
    from sspa_ray.engine.images import GIB, keep_data_on_device

    def gpu(free, total, reserved, allocated):
        monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (free * GIB, total * GIB))
        monkeypatch.setattr(torch.cuda, "memory_reserved", lambda device=None: reserved * GIB)
        monkeypatch.setattr(torch.cuda, "memory_allocated", lambda device=None: allocated * GIB)

    cuda = torch.device("cuda", 0)
    # Four trials at --gpus-per-trial 0.25 start together on an idle 80 GiB GPU: each budgets 20 GiB,
    # so a 12 GiB dataset stays on the host instead of four copies running the GPU out of memory.
    gpu(free=80, total=80, reserved=0, allocated=0)
    fits, line = keep_data_on_device(12 * GIB, cuda, 0.25)
    assert not fits and "stays on the host" in line and "budget 20.00 GiB" in line
    assert keep_data_on_device(9 * GIB, cuda, 0.25)[0]
    # A reused trial process: 30 GiB cached by PyTorch's allocator counts as available to it.
    gpu(free=10, total=80, reserved=31, allocated=1)
    fits, line = keep_data_on_device(12 * GIB, cuda, 1.0)
    assert fits and "stays on the GPU" in line and "10.0 free + 30.0 cached" in line
    assert not keep_data_on_device(21 * GIB, cuda, 1.0)[0]


def test_bad_sizes_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="train.batch_size"):
        fit(config(train__batch_size=512), tmp_path, data=easy_data(), log=lambda _: None)
    with pytest.raises(ConfigError, match="modules.ssm"):
        config(modules__ssm=False)  # PAM needs SSM


def test_target_only_run_has_no_selection(tmp_path):
    metrics = fit(config(data__aux="none"), tmp_path, data=easy_data(aux=False), log=lambda _: None)
    assert "selection" not in metrics and metrics["clean_share"] is None
    assert len((tmp_path / "selection.csv").read_text().splitlines()) == 161


# ---- augmentation and metrics -------------------------------------------------------------------


def test_augment_crops_and_flips_per_sample_and_is_reproducible():
    images = torch.randint(0, 256, (64, 8, 8, 3), dtype=torch.uint8)
    a = augment(images, torch.Generator().manual_seed(0), 2)
    b = augment(images, torch.Generator().manual_seed(0), 2)
    assert a.shape == (64, 3, 8, 8) and a.dtype == torch.float32 and torch.equal(a, b)
    padded = normalize(torch.nn.functional.pad(images, (0, 0, 2, 2, 2, 2)))
    seen = set()
    for i in range(64):  # every output is a window of the zero-padded image, maybe mirrored
        windows = [
            (dy, dx, flip)
            for dy in range(5)
            for dx in range(5)
            for flip in (False, True)
            if torch.equal(a[i], (lambda w: w.flip(-1) if flip else w)(padded[i, :, dy : dy + 8, dx : dx + 8]))
        ]
        assert windows, f"sample {i} is not a crop of its image"
        seen.add(windows[0])
    assert len(seen) > 10  # offsets and flips are drawn per sample
    assert {flip for _, _, flip in seen} == {False, True}
    unpadded = augment(images, torch.Generator().manual_seed(1), 0)
    assert all(torch.equal(u, n) or torch.equal(u, n.flip(-1)) for u, n in zip(unpadded, normalize(images), strict=True))


def test_classification_metrics_by_hand():
    m = classification_metrics(np.array([0, 0, 1, 2]), np.array([0, 1, 1, 1]))
    assert m["accuracy"] == 0.5
    assert m["per_class"]["anger"] == {"precision": 1.0, "recall": 0.5, "f1": pytest.approx(2 / 3), "support": 2}
    assert m["per_class"]["disgust"]["precision"] == pytest.approx(1 / 3)
    assert m["per_class"]["fear"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}  # 0/0 -> 0
    assert m["macro_f1"] == pytest.approx((2 / 3 + 0.5 + 0.0) / 3)  # over the classes that occur
    assert m["confusion"][0][:3] == [1, 1, 0] and sum(map(sum, m["confusion"])) == 4


def test_selection_metrics_by_hand():
    s = selection_metrics(np.array([1, 0, 1, 1]), np.array([0, 1, 2, 3]), np.array([0, 1, 0, 3]))
    kept = s.pop("kept_per_class")
    assert s == {"clean_share": 0.75, "precision": 2 / 3, "recall": 2 / 3, "aux_base_rate": 0.75}
    assert kept["anger"] == 1.0 and kept["disgust"] == 0.0 and kept["fear"] == 1.0 and kept["neutral"] == 0.0
    without_truth = selection_metrics(np.zeros(3, bool), np.zeros(3), None)
    assert without_truth["clean_share"] == 0.0 and without_truth["kept_per_class"]["anger"] == 0.0
    assert set(without_truth) == {"clean_share", "kept_per_class"}


# ---- DDP -----------------------------------------------------------------------------------------

DDP_WORKER = textwrap.dedent(
    """
    import sys, torch, torch.distributed as dist
    sys.path.insert(0, {tests!r})
    from test_engine import config, easy_data
    from sspa_ray.engine.loop import Trainer
    dist.init_process_group("gloo")
    trainer = Trainer(config(train__epochs=2, train__selection_epochs=1), sys.argv[1], data=easy_data(), log=print)
    reports = []
    metrics = trainer.run(report=lambda m, d: reports.append(None if d is None else d.name))
    torch.save({{"selector": trainer.method.selector.state_dict(), "metrics": metrics, "reports": reports}},
               sys.argv[2] + f"/rank{{dist.get_rank()}}.pt")
    dist.destroy_process_group()
    """
)


def test_ddp_on_two_cpu_processes_shares_ssm_state_and_gathers_predictions(tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(DDP_WORKER.format(tests=str(TESTS)))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    procs = []
    for rank in range(2):
        env = {**os.environ, "OMP_NUM_THREADS": "1", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port),
               "RANK": str(rank), "WORLD_SIZE": "2"}
        procs.append(subprocess.Popen([sys.executable, str(script), str(tmp_path / "run"), str(tmp_path)], env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2))
    for key in ("thresholds", "clean"):
        assert torch.equal(r0["selector"][key], r1["selector"][key])
    # Each rank saw half of every batch; after the all_reduce both hold all 10 x 32 updates.
    updated = (r0["selector"]["thresholds"] != 1 / 7).any(dim=1)
    assert int(updated.sum()) == (320 // 32) * 32
    assert without_timing(r0["metrics"]) == without_timing(r1["metrics"])
    assert sum(map(sum, r0["metrics"]["confusion"])) == 96  # every test prediction gathered
    assert r0["reports"] == ["epoch_0001", "epoch_0002"] and r1["reports"] == [None, None]
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["epochs_done"] == 2


def _run_ranks(script: Path, args: list[str], world: int, *, reference: bool = False) -> None:
    """Run `script` as `world` gloo ranks (and, with `reference`, once more without torch.distributed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    procs = []
    for rank in range(world):
        env = {**os.environ, "OMP_NUM_THREADS": "1", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port),
               "RANK": str(rank), "WORLD_SIZE": str(world)}
        procs.append(subprocess.Popen([sys.executable, str(script), *args], env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True))
    if reference:
        env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE")}
        procs.append(subprocess.Popen([sys.executable, str(script), *args], env={**env, "OMP_NUM_THREADS": "1"},
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err


STEP_WORKER = textwrap.dedent(
    """
    import os, sys, numpy as np, torch, torch.distributed as dist
    from torch import nn
    sys.path.insert(0, {tests!r})
    from test_engine import config, symmetric_batch
    from sspa_ray.engine.loop import Trainer
    from sspa_ray.engine.selection import SampleSelector
    ranks = int(os.environ.get("WORLD_SIZE", 1))
    if ranks > 1:
        dist.init_process_group("gloo")
    name = f"rank{{dist.get_rank()}}" if ranks > 1 else "single"
    data, clean = symmetric_batch()
    trainer = Trainer(config(train__batch_size=len(clean), data__crop_padding=0), sys.argv[1] + "/" + name,
                      data=data, log=print)
    # BatchNorm statistics are per rank (no SyncBN): take them out to compare the loss weighting alone.
    for seq in (trainer.model.backbone,):
        for i, layer in enumerate(seq):
            if isinstance(layer, nn.BatchNorm2d):
                seq[i] = nn.Identity()
    model = trainer.training_model()
    trainer.method.clean = clean
    for _ in range(2):
        trainer.train_epoch(model, trainer.plan(), "SS")
    out = {{"model": trainer.model.state_dict()}}
    if ranks > 1:
        # Every rank records the same two samples: their record must stay a mean, not a sum.
        selector = SampleSelector(4, 1, 7, 0.5)
        ids = torch.tensor([1, 2])
        selector.observe(ids, torch.tensor([[[2.0, 0, 0, 0, 0, 0, 0], [0, 1.0, 0, 0, 0, 0, 0]]]), torch.tensor([0, 0]))
        selector.end_epoch()
        out["thresholds"] = selector.thresholds
    torch.save(out, sys.argv[1] + f"/{{name}}.pt")
    if ranks > 1:
        dist.destroy_process_group()
    """
)


def symmetric_batch():
    """64 target samples whose images are mirror-symmetric (so the random flip changes nothing), one
    global batch; the clean mask gives rank 0's half 20 clean samples and rank 1's half 4."""
    rng = np.random.default_rng(3)
    split, _ = _split(rng, 64, name="target")
    split.images[:, :, SIZE // 2 :] = split.images[:, :, : SIZE // 2][:, :, ::-1]
    test, _ = _split(rng, 8, name="test")
    order = np.random.default_rng([0, 0, 0]).permutation(64)  # the plan's order of epoch 0, seed 0
    clean = np.zeros(64, bool)
    clean[order[:20]] = True
    clean[order[32:36]] = True
    return JointData(split, None, test, None), clean


def test_two_gloo_ranks_take_the_same_step_as_one_process_and_average_ssm_records(tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(STEP_WORKER.format(tests=str(TESTS)))
    _run_ranks(script, [str(tmp_path)], 2, reference=True)
    single, r0, r1 = (torch.load(tmp_path / f"{name}.pt", weights_only=True) for name in ("single", "rank0", "rank1"))
    # Two steps with 20 and 4 of the 64 samples counting on the two ranks.
    for key, value in single["model"].items():
        assert torch.equal(r0["model"][key], r1["model"][key]), key
        assert torch.allclose(r0["model"][key], value, rtol=1e-4, atol=1e-6), key
    probs = torch.softmax(torch.tensor([[2.0, 0, 0, 0, 0, 0, 0], [0, 1.0, 0, 0, 0, 0, 0]]), dim=1)
    expected = 0.5 * (1 / 7) + 0.5 * probs.amax(dim=1)
    assert torch.allclose(r0["thresholds"][1:3, 0], expected) and torch.equal(r0["thresholds"], r1["thresholds"])
