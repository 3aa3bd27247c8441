"""One representative of every torchvision classifier family, explained without hand-written canonizers.

Each model is built with ``weights=None`` and a fixed seed (BatchNorm statistics calibrated on one
random batch, see ``conftest.calibrated``), at the smallest convenient input size, batch 2.
"""

from __future__ import annotations

import pytest
import torch
import torchvision
from conftest import assert_family_explained_and_conserves, calibrate, calibrated

from lrpcli import Explainer, explain, prepare
from lrpcli.models.registry import torchvision_classifiers

pytestmark = pytest.mark.slow  # every torchvision family, built and explained

#: (builder, input size, extra builder arguments, the family it stands for)
FAMILIES: list[tuple[str, int, dict[str, object], str]] = [
    ("alexnet", 64, {}, "AlexNet"),
    ("vgg11", 32, {}, "VGG"),
    ("vgg11_bn", 32, {}, "VGG with BatchNorm"),
    ("resnet18", 64, {}, "ResNet"),
    ("resnext50_32x4d", 64, {}, "ResNeXt"),
    ("wide_resnet50_2", 64, {}, "Wide ResNet"),
    ("densenet121", 64, {}, "DenseNet"),
    ("googlenet", 64, {"aux_logits": False, "init_weights": True}, "GoogLeNet"),
    ("inception_v3", 75, {"aux_logits": False, "init_weights": True, "transform_input": True}, "Inception v3"),
    ("mobilenet_v2", 64, {}, "MobileNet v2"),
    ("mobilenet_v3_small", 64, {}, "MobileNet v3 (hardswish, squeeze-excitation)"),
    ("efficientnet_b0", 64, {}, "EfficientNet v1 (SiLU, SE, stochastic depth)"),
    ("efficientnet_v2_s", 64, {}, "EfficientNet v2"),
    ("mnasnet0_5", 64, {}, "MNASNet"),
    ("regnet_x_400mf", 64, {}, "RegNet X"),
    ("regnet_y_400mf", 64, {}, "RegNet Y (squeeze-excitation)"),
    ("shufflenet_v2_x0_5", 64, {}, "ShuffleNet v2 (channel shuffle, chunk)"),
    ("squeezenet1_0", 64, {}, "SqueezeNet"),
    ("convnext_tiny", 64, {}, "ConvNeXt (LayerNorm, GELU, layer scale)"),
    ("vit_b_16", 64, {"image_size": 64}, "Vision Transformer (attention, class token)"),
    ("swin_t", 64, {}, "Swin Transformer (shifted-window attention)"),
    ("MaxVit", 64, {}, "MaxViT (MBConv, block and grid attention as einsum)"),
]
#: MaxViT-T needs 224 px (its partition size 7 must divide every stage); this small MaxViT has the same
#: blocks and attention code at 64 px
MAXVIT_SMALL = {"input_size": (64, 64), "stem_channels": 16, "partition_size": 2, "block_channels": [16, 32],
                "block_layers": [1, 1], "head_dim": 8, "stochastic_depth_prob": 0.2, "num_classes": 10}  # fmt: skip


def _model(name: str, size: int, kwargs: dict[str, object]) -> torch.nn.Module:
    if name == "MaxVit":
        torch.manual_seed(0)
        return calibrate(torchvision.models.MaxVit(**MAXVIT_SMALL), size=size)  # type: ignore[arg-type]
    model = calibrated(name, size=size, **kwargs)
    if name.startswith("vit"):  # torchvision initialises the head (logits would be 0) and class token to zeros
        torch.manual_seed(1)
        torch.nn.init.normal_(model.heads.head.weight, std=0.02)
        torch.nn.init.normal_(model.class_token, std=0.02)
    return model


@pytest.mark.parametrize(("name", "size", "kwargs"), [f[:3] for f in FAMILIES], ids=[f[0] for f in FAMILIES])
def test_family_is_explained_and_conserves(name: str, size: int, kwargs: dict[str, object]) -> None:
    assert_family_explained_and_conserves(_model(name, size, kwargs), size)


def test_layer_norm_and_attention_are_linearised_not_passed() -> None:
    """ConvNeXt and ViT: LayerNorm and attention get the ε-rule on their σ-/weights-frozen affine map."""
    convnext = prepare(_model("convnext_tiny", 64, {}))
    norms = [s for s in convnext.steps if s.kind == "frozen"]
    assert {s.frozen.name for s in norms} == {"layer_norm"}
    assert any(s.op == "layer_norm" for s in norms), "LayerNorm2d's functional call is linearised too"
    vit = _model("vit_b_16", 64, {"image_size": 64})
    names = {s.frozen.name for s in prepare(vit).steps if s.kind == "frozen"}
    assert names == {"layer_norm", "attention"}
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(5))
    e = explain(vit, x, "epsilon")
    attn = [en for en in e.ledger.entries if en.rule.startswith("attention")]
    assert len(attn) == 12
    # the learned class token is a constant concatenated to the patches: it absorbs relevance like a bias
    cat = next(en for en in e.ledger.entries if en.op == "cat")
    assert float(cat.bias.abs().min()) > 0
    torch.testing.assert_close(cat.r_out - cat.r_in, cat.bias, rtol=1e-4, atol=1e-6)


def test_swin_window_attention_replays_its_softmax_weights() -> None:
    """Swin's fused attention function is re-run with its softmax answered from the forward pass."""
    from lrpcli.core.linearize import SoftmaxFrozen

    model = _model("swin_t", 64, {})
    frozen = [s.frozen for s in prepare(model).steps if s.kind == "frozen"]
    attn = [f for f in frozen if isinstance(f, SoftmaxFrozen)]
    assert len(attn) == 12 and attn[0].name == "shifted_window_attention"
    x = torch.randn(1, 16, 16, 96, dtype=torch.float64)
    lin = attn[1]  # a shifted block
    lin.bound = {k: v.double() if isinstance(v, torch.Tensor) else v for k, v in lin.bound.items()}
    with torch.no_grad():
        y, weights = lin.forward(x, bias_free=False)
        assert len(weights) == 1
        torch.testing.assert_close(lin.apply(x, weights, bias_free=False), y)
        # frozen weights make it affine: f(a x1 + b x2) = a f(x1) + b f(x2) + (1 - a - b) f(0)
        x2 = torch.randn_like(x)
        mix = lin.apply(2 * x - 3 * x2, weights, False)
        zero = lin.apply(torch.zeros_like(x), weights, False)
        torch.testing.assert_close(mix, 2 * y - 3 * lin.apply(x2, weights, False) + 2 * zero)


def test_every_torchvision_classifier_builder_is_canonized() -> None:
    """All classification builders of torchvision trace and canonize (built on the meta device: no memory)."""
    failures = {}
    for name in torchvision_classifiers():
        if name == "regnet_y_128gf":
            continue  # 645M parameters; RegNet builders cannot run on the meta device (see below)
        try:
            with torch.device("meta"):
                model = torchvision.models.get_model(name, weights=None)
        except NotImplementedError:  # RegNet's initialisation reads tensor values: build it for real
            torch.manual_seed(0)
            model = torchvision.models.get_model(name, weights=None)
        try:
            explainer = Explainer(model.eval(), "epsilon_gamma_box")
        except Exception as exc:  # noqa: BLE001 - collect every failure, not just the first
            failures[name] = f"{type(exc).__name__}: {exc}"
            continue
        assert explainer.program.affine_steps(), name
    assert not failures, failures
