"""The engine's choice of what to explain: contrasts, several targets per forward pass, and the
relevance kept at inner layers (``Explainer.each``, ``contrast=``, ``layers=``)."""

from __future__ import annotations

import copy
import functools

import pytest
import torch
from conftest import calibrated
from torch import nn

from lrpcli import Explainer, explain, top_classes

PRESETS_TO_CHECK = ("epsilon_plus_flat", "epsilon_gamma_box", "epsilon_alpha2_beta1", "epsilon")


@functools.cache
def resnet64() -> nn.Module:
    return calibrated("resnet18", size=64)


@functools.cache
def resnet64_double() -> nn.Module:
    return copy.deepcopy(resnet64()).double()


def _x(n: int = 3, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.randn(n, 3, 64, 64, generator=torch.Generator().manual_seed(11)).clamp(-2.0, 2.2).to(dtype)


@pytest.mark.parametrize("composite", PRESETS_TO_CHECK)
def test_contrast_is_the_difference_of_the_two_maps(composite: str) -> None:
    """Rules linear in R: the map of f_A − f_B equals map(A) − map(B) (float64, to rounding)."""
    model, x = resnet64_double(), _x(dtype=torch.float64)
    explainer = Explainer(model, composite, low=-3.0, high=3.0)
    a, b = [3, 7, 9], [5, 5, 1]
    both = explainer(x, a, contrast=b)
    diff = explainer(x, a).relevance - explainer(x, b).relevance
    torch.testing.assert_close(both.relevance, diff, rtol=1e-9, atol=1e-12)
    assert both.contrasts is not None and both.contrasts.tolist() == b
    assert both.targets.tolist() == a
    logits = both.logits.double()
    torch.testing.assert_close(both.ledger.output, logits[[0, 1, 2], a] - logits[[0, 1, 2], b])
    assert float(both.ledger.relative_error().max()) <= 1e-9


def test_contrast_conserves_the_logit_difference_under_bias_free_lrp0() -> None:
    model, x = resnet64_double(), _x(dtype=torch.float64)
    e = explain(model, x, {"conv": "lrp0", "linear": "lrp0"}, target=2, contrast=[0, 1, 3], ignore_bias=True, stabilizer=0.0)
    torch.testing.assert_close(e.ledger.pixels, e.ledger.output, rtol=1e-9, atol=1e-12)
    assert bool((e.relevance < 0).any()) and bool((e.relevance > 0).any())


def test_contrast_with_itself_explains_nothing() -> None:
    model, x = resnet64_double(), _x(2, torch.float64)
    e = explain(model, x, target=4, contrast=4)
    assert e.ledger.output.abs().max() == 0
    assert e.relevance.abs().max() == 0


@pytest.mark.parametrize("composite", PRESETS_TO_CHECK)
def test_several_targets_from_one_forward_equal_single_runs(composite: str) -> None:
    """Walks after the first must see the forward pass's values untouched (rules reuse ``z``)."""
    model, x = resnet64(), _x()
    explainer = Explainer(model, composite, low=-3.0, high=3.0, precision="model")
    calls = 0
    forward = explainer._forward

    def counting(*args, **kwargs):
        nonlocal calls
        calls += kwargs.get("keep", True)  # not the probes of _batch_layout
        return forward(*args, **kwargs)

    explainer._forward = counting  # type: ignore[method-assign]
    many = explainer.each(x, top_classes(3))
    assert calls == 1  # one forward pass (that keeps what the rules need) for the three maps
    explainer._forward = forward  # type: ignore[method-assign]
    top3 = many[0].logits.topk(3, dim=1).indices
    assert len(many) == 3
    for k, exp in enumerate(many):
        assert exp.targets.tolist() == top3[:, k].tolist()
        single = explainer(x, top3[:, k])
        torch.testing.assert_close(exp.relevance, single.relevance, rtol=1e-6, atol=1e-7)
        torch.testing.assert_close(exp.ledger.output, single.ledger.output)
        assert float(exp.ledger.relative_error().max()) <= 1e-5


def test_each_takes_explicit_columns_and_a_contrast_per_column() -> None:
    model, x = resnet64_double(), _x(2, torch.float64)
    explainer = Explainer(model)
    targets = torch.tensor([[1, 2], [3, 4]])
    many = explainer.each(x, targets, contrast=torch.tensor([[0, 0], [5, 6]]))
    torch.testing.assert_close(many[1].relevance, explainer(x, [2, 4], contrast=[0, 6]).relevance)
    with pytest.raises(ValueError, match="contrast needs 1 or 2 columns"):
        explainer.each(x, targets, contrast=torch.zeros(2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="top_classes needs k >= 1"):
        top_classes(0)


def test_auto_precision_redoes_a_contrast_in_float64_with_its_contrast() -> None:
    """A redone image keeps its contrast: the float64 ledger it is spliced with explains f_A − f_B."""
    model, x = resnet64(), _x(2)
    explainer = Explainer(model, tolerance=0.0)  # every image is redone
    e = explainer(x, 1, contrast=2, layers=["layer3"])
    assert e.float64_rows == [0, 1]
    ref = Explainer(resnet64_double())(x.double(), 1, contrast=2, layers=["layer3"])
    torch.testing.assert_close(e.relevance, ref.relevance.float(), rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(e.layers["layer3"], ref.layers["layer3"].float(), rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(e.ledger.output, ref.ledger.output)


class PlainNet(nn.Module):
    """Bias-free ReLU network: LRP-0 at any layer's output h is h ⊙ ∂f/∂h."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.ReLU(),
            nn.Conv2d(8, 12, 3, padding=1, bias=False), nn.ReLU(),
            nn.AvgPool2d(2),
        )  # fmt: skip
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(12 * 8 * 8, 5, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def _gradient_times_input_at(model: PlainNet, x: torch.Tensor, target: int, module: nn.Module) -> torch.Tensor:
    kept: list[torch.Tensor] = []

    def hook(_m: nn.Module, _i: object, out: torch.Tensor) -> None:
        out.retain_grad()
        kept.append(out)

    handle = module.register_forward_hook(hook)
    try:
        model(x)[:, target].sum().backward()
    finally:
        handle.remove()
    return (kept[0] * kept[0].grad).detach()


@pytest.mark.parametrize("name, pick", [("features.3", lambda m: m.features[3]), ("features", lambda m: m.features)])
def test_layer_relevance_is_lrp0_at_that_layer(name: str, pick) -> None:
    torch.manual_seed(0)
    model = PlainNet().double().eval()
    x = torch.randn(2, 3, 16, 16, dtype=torch.float64)
    e = explain(model, x, {"conv": "lrp0", "linear": "lrp0"}, target=1, layers=[name], stabilizer=0.0)
    ref = _gradient_times_input_at(model, x.clone().requires_grad_(True), 1, pick(model))
    torch.testing.assert_close(e.layers[name], ref, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(e.layers[name].sum((1, 2, 3)), e.ledger.output, rtol=1e-9, atol=1e-12)


def test_layer_relevance_sum_is_what_the_ledger_says_arrives_there() -> None:
    model, x = resnet64_double(), _x(2, torch.float64)
    explainer = Explainer(model, "epsilon_plus_flat")
    step = explainer.layer_step("layer2")
    e = explainer(x, layers=["layer2", "layer4.1.conv2"])
    name = explainer.program.steps[step].name
    entry = next(en for en in e.ledger.entries if en.step == name)
    torch.testing.assert_close(e.layers["layer2"].sum((1, 2, 3)), entry.r_out, rtol=1e-9, atol=1e-12)
    assert e.layers["layer2"].shape == (2, 128, 8, 8)
    assert e.layers["layer4.1.conv2"].shape == (2, 512, 2, 2)
    # under bias-free LRP-0 the whole of f(x) passes through layer2's output (a cut of the graph)
    free = explain(model, x, {"conv": "lrp0", "linear": "lrp0"}, layers=["layer2"], ignore_bias=True, stabilizer=0.0)
    torch.testing.assert_close(free.layers["layer2"].sum((1, 2, 3)), free.ledger.output, rtol=1e-9, atol=1e-12)


def test_unknown_layer_names_the_close_ones() -> None:
    explainer = Explainer(resnet64())
    with pytest.raises(ValueError, match="did you mean.*layer2"):
        explainer.layer_step("layr2")
    with pytest.raises(ValueError, match="folded into its conv"):
        explainer.layer_step("bn1")


def test_a_layer_whose_output_mixes_images_in_the_batch_is_refused_before_explaining() -> None:
    """Window attention puts windows into the batch dimension: its output is no image-per-row map."""
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    model = timm.create_model("swin_tiny_patch4_window7_224", pretrained=False, img_size=64, window_size=2, depths=(1, 1, 1, 1)).eval()
    explainer = Explainer(model)
    x = torch.randn(1, 3, 64, 64)
    with pytest.raises(ValueError, match="one image per row"):
        explainer.layer_step("layers.0.blocks.0.attn", x)
    step = explainer.layer_step("layers.0.blocks.0", x)  # the block gives the windows back
    assert explainer(x, layers=["layers.0.blocks.0"]).layers["layers.0.blocks.0"].shape[0] == 1
    assert step == explainer.layer_step("layers.0.blocks.0")
