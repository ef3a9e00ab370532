"""Backbones, the MoE head, ARM and pretrained-checkpoint loading."""

import pytest
import torch
from torch import nn

from sspa_ray.config import make_config
from sspa_ray.errors import ConfigError, DataError
from sspa_ray.model import build_model, expert_probabilities
from sspa_ray.model.arm import AmendRepresentation
from sspa_ray.model.moe import MoEHead
from sspa_ray.model.resnet import resnet18_trunk


def cfg(**sets):
    return make_config("synthetic", {"model.pretrained": None}, {k.replace("__", "."): v for k, v in sets.items()})


@pytest.mark.parametrize("backbone,size", [("small", 16), ("small", 32), ("resnet18", 32)])
def test_models_return_per_expert_logits(backbone, size):
    model = build_model(cfg(model__backbone=backbone, data__image_size=size, moe__experts=4))
    logits = model(torch.randn(3, 3, size, size))
    assert logits.shape == (4, 3, 7)
    single = build_model(cfg(model__backbone=backbone, data__image_size=size, modules__moe=False))
    assert single(torch.randn(2, 3, size, size)).shape == (1, 2, 7)
    assert single.head.gate is None  # MoE off: one linear head, no gate


def test_moe_head_follows_equation_2():
    torch.manual_seed(0)
    head = MoEHead(5, 7, 3)
    f = torch.randn(4, 5)
    logits = head(f)
    w = 3 * torch.softmax(head.gate(f), dim=1)  # softmax over experts, weights averaging 1
    for i in range(3):
        ffn_i = f @ head.ffn.weight[i * 7 : (i + 1) * 7].T + head.ffn.bias[i * 7 : (i + 1) * 7]
        assert torch.allclose(logits[i], ffn_i * w[:, i : i + 1], atol=1e-6)
    assert torch.allclose(w.mean(dim=1), torch.ones(4))
    probs = expert_probabilities(logits)
    assert torch.allclose(probs, torch.softmax(logits, dim=2).mean(dim=0))
    assert torch.allclose(probs.sum(dim=1), torch.ones(4))


def test_one_gated_expert_is_a_plain_linear_head():
    head = MoEHead(5, 7, 1, gated=True)
    f = torch.randn(4, 5)
    assert torch.allclose(head(f)[0], head.ffn(f))


def _arm_reference(arm: AmendRepresentation, fmap: torch.Tensor) -> torch.Tensor:
    """ARM as its authors wrote it: the de-albino conv applied channel by channel in a loop."""
    x = arm.shuffle(fmap)
    x = torch.cat([arm.de_albino(x[:, i : i + 1]) for i in range(x.shape[1])], dim=1)
    x = arm.bn(x)
    return (x.mean(dim=1, keepdim=True) + arm.alpha * x.mean(dim=(0, 1))).flatten(1)


def test_arm_is_the_vectorised_module_of_its_paper():
    torch.manual_seed(0)
    arm = AmendRepresentation(alpha=0.7)
    fmap = torch.randn(4, 512, 7, 7)
    reference = AmendRepresentation(alpha=0.7)
    reference.load_state_dict(arm.state_dict())
    out = arm(fmap)
    assert out.shape == (4, 121)
    assert torch.allclose(out, _arm_reference(reference, fmap), atol=1e-5)
    assert arm.running_batch_mean.abs().sum() > 0  # the batch mean is tracked for eval mode


def test_arm_eval_output_does_not_depend_on_the_rest_of_the_batch():
    torch.manual_seed(0)
    arm = AmendRepresentation()
    for _ in range(3):
        arm(torch.randn(8, 512, 7, 7))
    arm.eval()
    batch = torch.randn(6, 512, 7, 7)
    assert torch.allclose(arm(batch)[:2], arm(batch[:2]), atol=1e-6)


def test_arm_model_end_to_end_at_224():
    model = build_model(cfg(model__backbone="arm", data__image_size=224, model__arm_alpha=0.5))
    assert model.backbone[1].alpha.item() == 0.5
    assert model(torch.randn(2, 3, 224, 224)).shape == (3, 2, 7)


def test_arm_rejects_other_input_sizes():
    with pytest.raises(ConfigError, match="data.image_size=224"):
        build_model(cfg(model__backbone="arm", data__image_size=112))
    with pytest.raises(ConfigError, match="data.image_size"):
        AmendRepresentation()(torch.randn(2, 512, 4, 4))


def test_pretrained_resnet18_loads_state_dict_forms(tmp_path):
    source = torchvision_like_checkpoint()
    for name, blob in {
        "wrapped.pth": {"state_dict": {f"module.{k}": v for k, v in source.items()}},
        "bare.pth": source,
    }.items():
        torch.save(blob, tmp_path / name)
        model = build_model(cfg(model__backbone="resnet18", model__pretrained=str(tmp_path / name)))
        loaded = model.backbone.state_dict()
        assert all(torch.equal(loaded[k], v) for k, v in source.items() if not k.startswith("fc."))


def torchvision_like_checkpoint() -> dict:
    torch.manual_seed(1)
    net = resnet18_trunk()
    net.fc = nn.Linear(512, 1000)  # a face-recognition / ImageNet classifier, dropped on load
    return {k: v.clone() for k, v in net.state_dict().items()}


def test_pretrained_errors_are_one_line_user_errors(tmp_path):
    with pytest.raises(ConfigError, match="no such file"):
        build_model(cfg(model__backbone="resnet18", model__pretrained=str(tmp_path / "missing.pth")))
    (tmp_path / "corrupt.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(DataError, match="not a readable torch checkpoint") as info:
        build_model(cfg(model__backbone="resnet18", model__pretrained=str(tmp_path / "corrupt.pth")))
    assert "\n" not in str(info.value)
    torch.save({"state_dict": {"layer9.weight": torch.zeros(1)}}, tmp_path / "other.pth")
    with pytest.raises(DataError, match="not a ResNet-18 checkpoint"):
        build_model(cfg(model__backbone="resnet18", model__pretrained=str(tmp_path / "other.pth")))
