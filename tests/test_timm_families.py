"""One representative of each timm classifier family, explained without hand-written canonizers.

Like ``test_families.py`` for torchvision: each model is built by ``timm.create_model(name,
pretrained=False)`` with a fixed seed (BatchNorm statistics calibrated on one random batch, see
``conftest.calibrate``), at 64 × 64 pixels, batch 2, and must close its ledger and conserve under
bias-free LRP-0. timm's ``BatchNormAct2d`` calls ``F.batch_norm`` (folded like the module), its
ViTs take an optional ``attn_mask=None`` (traced as that constant) and use
``F.scaled_dot_product_attention`` (softmax weights frozen) on ``(q, k, v)`` stacked in front of
the batch; its Swin merges windows into the batch dimension.
"""

from __future__ import annotations

import os

import pytest
import torch
from conftest import assert_family_explained_and_conserves, calibrate

from lrpcli import prepare

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # random weights only: nothing may be downloaded
timm = pytest.importorskip("timm")

pytestmark = pytest.mark.slow  # whole timm families, built and explained

#: (builder, extra builder arguments, the family it stands for); all at 64 × 64
FAMILIES: list[tuple[str, dict[str, object], str]] = [
    ("resnet18", {}, "ResNet"),
    ("efficientnet_lite0", {}, "EfficientNet-Lite (BatchNormAct2d: F.batch_norm)"),
    ("efficientnet_b0", {}, "EfficientNet (SiLU, squeeze-excitation)"),
    ("mobilenetv3_small_050", {}, "MobileNetV3 (hard-swish, squeeze-excitation)"),
    ("regnety_002", {}, "RegNet Y"),
    ("convnext_atto", {}, "ConvNeXt (LayerNorm, GELU, layer scale)"),
    ("vit_tiny_patch16_224", {"img_size": 64}, "ViT / DeiT (fused attention, attn_mask=None)"),
    ("swin_tiny_patch4_window7_224", {"img_size": 64, "window_size": 2}, "Swin (windows merged into the batch)"),
    ("levit_128s", {"img_size": 64}, "LeViT (hybrid: convolution stem, attention with BatchNorm)"),
]
SIZE = 64


def _model(name: str, kwargs: dict[str, object]) -> torch.nn.Module:
    torch.manual_seed(0)
    return calibrate(timm.create_model(name, pretrained=False, **kwargs), size=SIZE)


@pytest.mark.parametrize(("name", "kwargs"), [f[:2] for f in FAMILIES], ids=[f[0] for f in FAMILIES])
def test_timm_family_is_explained_and_conserves(name: str, kwargs: dict[str, object]) -> None:
    assert_family_explained_and_conserves(_model(name, kwargs), SIZE)


def test_batchnorm_act_is_folded_into_its_convolution() -> None:
    """EfficientNet-Lite0's BatchNormAct2d layers (functional batch_norm) fold like nn.BatchNorm2d."""
    program = prepare(_model("efficientnet_lite0", {}))
    folds = [c for c in program.canonizations if c.startswith("folded") and "padding" not in c]
    assert len(folds) == 49 and "folded bn1 into conv_stem" in folds
    assert len(program.affine_steps()) == 50  # 49 convolutions with their BatchNorm, and the classifier
    assert not [s for s in program.steps if s.kind == "batchnorm"]


def test_vit_attention_is_frozen_and_its_mask_argument_is_a_constant() -> None:
    program = prepare(_model("vit_tiny_patch16_224", {"img_size": 64}))
    attention = [s for s in program.steps if s.kind == "frozen" and s.frozen.name == "attention"]
    assert len(attention) == 12
    masks = [s for s in program.steps if s.op.startswith("argument attn_mask")]  # fx names it attn_mask_1
    assert masks and all(s.kind == "const" and s.op.endswith("= None (its default)") for s in masks)
