"""Backbones, the MoE head, ARM and pretrained-checkpoint loading."""

import pytest
import torch
from torch import nn

from sspa_ray.defaults import make_config
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


def torchvision_like_checkpoint() -> dict:
    torch.manual_seed(1)
    net = resnet18_trunk()
    net.fc = nn.Linear(512, 1000)  # a face-recognition / ImageNet classifier, dropped on load
    return {k: v.clone() for k, v in net.state_dict().items()}


def _trunk(source: dict) -> dict:
    return {k: v for k, v in source.items() if not k.startswith("fc.")}


def dream_checkpoint(source: dict) -> dict:
    """The layout of DREAM's ijba_res18_naive.pth.tar (MS-Celeb-1M, used by SCN, RUL, ...): a
    DataParallel model whose trunk feeds a 512->256 `feature` layer and an `fc` over the
    identities, saved by PyTorch 0.3 (no num_batches_tracked), under 'state_dict' with metadata."""
    trunk = {f"module.{k}": v for k, v in _trunk(source).items() if not k.endswith("num_batches_tracked")}
    return {"epoch": 30, "arch": "resnet18", "best_prec1": 97.5, "state_dict": {
        **trunk, "module.feature.weight": torch.randn(256, 512), "module.feature.bias": torch.randn(256),
        "module.fc.weight": torch.randn(1234, 256), "module.fc.bias": torch.randn(1234)}}


def sequential_checkpoint(source: dict) -> dict:
    """SCN / ARM models: `features = nn.Sequential(*resnet.children())`, a 7-class fc, saved as
    {'iter': ..., 'model_state_dict': ..., 'optimizer_state_dict': ...}."""
    index = {"conv1": "0", "bn1": "1", "layer1": "4", "layer2": "5", "layer3": "6", "layer4": "7"}
    state = {f"features.{index[k.split('.')[0]]}.{k.split('.', 1)[1]}": v for k, v in _trunk(source).items()}
    return {"iter": 100, "model_state_dict": {**state, "fc.weight": torch.randn(7, 121), "fc.bias": torch.randn(7),
                                              "arm.alpha": torch.ones(1)},
            "optimizer_state_dict": {"state": {}, "param_groups": []}}


@pytest.mark.parametrize("layout", ["torchvision", "dream", "dream_legacy_format", "nested_model", "timm_prefixed",
                                    "sequential"])
def test_pretrained_trunk_loads_from_common_checkpoint_layouts(tmp_path, layout):
    source = torchvision_like_checkpoint()
    blob, legacy = {
        "torchvision": (source, False),  # torchvision's / ARM's ImageNet resnet18-*.pth: bare, fc 1000
        "dream": (dream_checkpoint(source), False),
        "dream_legacy_format": (dream_checkpoint(source), True),  # written before torch 1.6's zip format
        "nested_model": ({"model": {"state_dict": {f"module.{k}": v for k, v in source.items()}}}, False),
        "timm_prefixed": ({"state_dict": {f"backbone.{k}": v for k, v in source.items()}}, False),
        "sequential": (sequential_checkpoint(source), False),
    }[layout]
    path = tmp_path / "weights.pth.tar"
    torch.save(blob, path, _use_new_zipfile_serialization=not legacy)
    for backbone, size in (("resnet18", 32), ("arm", 224)):
        model = build_model(cfg(model__backbone=backbone, data__image_size=size, model__pretrained=str(path)))
        loaded = model.backbone.state_dict() if backbone == "resnet18" else model.backbone[0].state_dict()
        names = {n: n for n in _trunk(source)} if backbone == "resnet18" else _arm_names(_trunk(source))
        for name, mine in names.items():
            if not name.endswith("num_batches_tracked"):
                assert torch.equal(loaded[mine], source[name]), (layout, backbone, name)


def _arm_names(trunk: dict) -> dict:
    index = {"conv1": "0", "bn1": "1", "layer1": "4", "layer2": "5", "layer3": "6", "layer4": "7"}
    return {k: f"{index[k.split('.')[0]]}.{k.split('.', 1)[1]}" for k in trunk}


def test_pretrained_errors_are_one_line_user_errors(tmp_path):
    with pytest.raises(ConfigError, match="no such file"):
        build_model(cfg(model__backbone="resnet18", model__pretrained=str(tmp_path / "missing.pth")))
    (tmp_path / "corrupt.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(DataError, match="not a readable torch checkpoint") as info:
        build_model(cfg(model__backbone="resnet18", model__pretrained=str(tmp_path / "corrupt.pth")))
    assert "\n" not in str(info.value)
    torch.save({"state_dict": {"layer9.weight": torch.zeros(1)}}, tmp_path / "other.pth")
    with pytest.raises(DataError, match="not a ResNet-18 checkpoint: it lacks 1\\d\\d trunk weights such as .'conv1.weight'"):
        build_model(cfg(model__backbone="resnet18", model__pretrained=str(tmp_path / "other.pth")))
    source = torchvision_like_checkpoint()
    del source["layer4.1.bn2.weight"]
    source["conv1.weight"] = torch.zeros(64, 1, 7, 7)  # a grey-scale stem
    torch.save({"state_dict": source}, tmp_path / "broken.pth")
    with pytest.raises(DataError) as info:
        build_model(cfg(model__backbone="resnet18", model__pretrained=str(tmp_path / "broken.pth")))
    message = str(info.value)
    assert "\n" not in message and "layer4.1.bn2.weight" in message and "conv1.weight 64x1x7x7 (want 64x3x7x7)" in message
