"""The engine's CUDA paths, on a real GPU: autocast, channels_last, the dataset resident on the
device and its fallback, torch.compile with the [k, B, C] head, host syncs per epoch, CPU/GPU
agreement and resume.

CI has no GPU, so every test here is skipped there. On a GPU machine (no Ray needed):
``python -m pytest -q tests/test_cuda.py`` (``make test-cuda``); ``benchmarks/gpu_session.sh``
runs these with the GPU benchmarks in one go.
"""

import math
import warnings

import numpy as np
import pytest
import torch
from test_engine import config, easy_data, without_timing

from sspa_ray.engine import fit
from sspa_ray.engine.loop import Trainer
from sspa_ray.outputs import Stage

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(),
                                reason="needs a CUDA GPU (CI has none): run `make test-cuda` on a GPU machine")

CUDA = {"train__device": "cuda"}
# Metrics of two numerically different runs (fp32 CPU vs GPU, bf16 vs fp32) on the 96 test images
# of easy_data(): one image is 0.0104 of accuracy. The runs learn the same easy task; a few images
# may flip.
AGREE = 0.05


def _fit(tmp_path, name, **overrides):
    return fit(config(**overrides), tmp_path / name, data=easy_data(), log=lambda _line: None)


def _close(a: dict, b: dict, tolerance: float = AGREE) -> None:
    for key in ("accuracy", "macro_f1"):
        assert abs(a[key] - b[key]) <= tolerance, (key, a[key], b[key])


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_autocast_trains_with_finite_losses_and_learns(tmp_path, precision):
    trainer = Trainer(config(**CUDA, train__precision=precision), tmp_path / "run", data=easy_data(),
                      log=lambda _line: None)
    assert trainer.autocast_dtype == {"bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    assert (trainer.scaler is not None) == (precision == "fp16")  # fp16 needs loss scaling, bf16 does not
    metrics = trainer.run()
    assert all(math.isfinite(r["loss"]) for r in metrics["history"])
    assert metrics["accuracy"] > 0.6, metrics["history"]  # chance is 1/7; fp32 on the CPU reaches it too


def test_channels_last_and_compile_with_the_moe_head_agree_with_the_plain_model(tmp_path):
    plain = _fit(tmp_path, "plain", **CUDA, moe__experts=3)
    trainer = Trainer(config(**CUDA, moe__experts=3, train__channels_last=True), tmp_path / "cl", data=easy_data(),
                      log=lambda _line: None)
    first = next(p for p in trainer.model.parameters() if p.dim() == 4)
    assert first.is_contiguous(memory_format=torch.channels_last)
    channels_last = trainer.run()
    compiled = _fit(tmp_path, "compiled", **CUDA, moe__experts=3, train__channels_last=True, train__compile=True)
    _close(plain, channels_last)
    _close(plain, compiled)

    # The compiled model gives the head's [k, B, C] logits.
    model = torch.compile(trainer.model)
    x = torch.rand(4, 3, 16, 16, device="cuda").to(memory_format=torch.channels_last)
    assert tuple(model(x).shape) == (3, 4, 7)


def test_the_dataset_is_resident_on_the_device_or_falls_back_to_the_host(tmp_path):
    resident = Trainer(config(**CUDA), tmp_path / "resident", data=easy_data(), log=lambda _line: None)
    host = Trainer(config(**CUDA, train__data_on_device=False), tmp_path / "host", data=easy_data(),
                   log=lambda _line: None)
    ids = np.arange(8)
    on_device = resident.train_images.take(ids, torch.from_numpy(ids).cuda())
    from_host = host.train_images.take(ids, torch.from_numpy(ids).cuda())
    assert on_device.device.type == from_host.device.type == "cuda"
    assert torch.equal(on_device, from_host)  # the same uint8 batch either way
    # The same training either way: where the images wait does not change a single step.
    assert without_timing(resident.run()) == without_timing(host.run())


def test_a_bf16_epoch_syncs_the_host_once(tmp_path):
    trainer = Trainer(config(**CUDA, train__precision="bf16"), tmp_path / "run", data=easy_data(),
                      log=lambda _line: None)
    model = trainer.training_model()
    for stage, epoch in ((Stage.SS, 0), (Stage.PA, trainer.cfg.train.selection_epochs)):
        trainer.epoch = epoch
        plan = trainer.plan()
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("warn")
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                loss = trainer.train_epoch(model, plan, stage)
        finally:
            torch.cuda.set_sync_debug_mode("default")
        syncs = [str(w.message) for w in caught if "synchroniz" in str(w.message).lower()]
        assert math.isfinite(loss)
        assert len(syncs) == 1, (stage, syncs)  # the epoch's mean loss, read once at its end


def test_cpu_and_gpu_agree_on_the_same_seed(tmp_path):
    cpu = _fit(tmp_path, "cpu", train__device="cpu")
    gpu = _fit(tmp_path, "gpu", **CUDA)
    _close(cpu, gpu)
    assert abs(cpu["selection"]["clean_share"] - gpu["selection"]["clean_share"]) <= AGREE


def test_a_resumed_gpu_run_equals_an_uninterrupted_one(tmp_path, monkeypatch):
    settings = {**CUDA, "train__precision": "bf16"}
    whole = _fit(tmp_path, "whole", **settings)
    monkeypatch.setenv("SSPA_TEST_CRASH_AFTER_EPOCH", "2")
    monkeypatch.setenv("SSPA_TEST_CRASH_MARKER", str(tmp_path / "crashed"))
    with pytest.raises(RuntimeError, match="injected failure after epoch 2"):
        _fit(tmp_path, "resumed", **settings)
    monkeypatch.delenv("SSPA_TEST_CRASH_AFTER_EPOCH")
    resumed = fit(config(**settings), tmp_path / "resumed", data=easy_data(), resume=True, log=lambda _line: None)
    assert without_timing(resumed) == without_timing(whole)
