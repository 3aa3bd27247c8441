"""Tests for lrpcli.core.canonize: BatchNorm and padding folds, functional layers, frozen norms."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from conftest import calibrated

from lrpcli import Explainer, UnsupportedOpError, explain, prepare


def test_resnet_batchnorms_fold_into_convolutions() -> None:
    model = calibrated("resnet18", size=64)
    program = prepare(model)
    n_bn = sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    n_affine = sum(isinstance(m, (nn.Conv2d, nn.Linear)) for m in model.modules())
    folds = [c for c in program.canonizations if c.startswith("folded") and "padding" not in c]
    assert len(folds) == n_bn == 20
    assert "folded bn1 into conv1" in program.canonizations
    assert len(program.affine_steps()) == n_affine
    assert _kinds(program)["norm"] == 8 + 1  # 8 residual additions + global average pooling
    # the folded program computes the model's logits
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(explain(model, x).logits, model(x), rtol=1e-4, atol=1e-5)


def test_zero_padding_folds_into_the_following_convolution() -> None:
    from lrpcli.models import efficientnet_lite0

    program = prepare(efficientnet_lite0(pretrained=False))
    pads = [c for c in program.canonizations if c.startswith("folded padding")]
    assert len(pads) == 5
    assert not any(s.kind == "move" and "Pad" in s.op for s in program.steps)


def test_padding_before_a_non_convolution_stays_data_movement() -> None:
    class M(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3)
            self.fc = nn.Linear(4, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = F.max_pool2d(F.pad(torch.relu(self.conv(x)), (1, 1, 1, 1)), 2)
            return self.fc(h.mean((2, 3)))

    e = explain(M(), torch.randn(2, 3, 9, 9), "epsilon", stabilizer=1e-6)
    assert float(e.ledger.relative_error().max()) <= 1e-5
    kinds = {en.step: en.rule for en in e.ledger.entries}
    assert kinds["pad"] == "move" and kinds["max_pool2d"] == "winner_takes_all"


def test_densenet_concatenation_and_unfoldable_batchnorm() -> None:
    model = calibrated("densenet121", size=64)
    program = prepare(model)
    assert any(s.op == "cat" and s.kind == "move" for s in program.steps)
    scale = [s for s in program.affine_steps() if s.affine.kind == "scale"]
    assert scale, "pre-activation BatchNorms (after a concatenation) cannot be folded"
    rows = {r["step"]: r for r in Explainer(model).rule_table()}
    assert rows[scale[0].name]["rule"].startswith("epsilon")
    assert "cannot be folded" in rows[scale[0].name]["why"]


def test_functional_layers_inplace_ops_and_constants() -> None:
    model = Functional()
    x = torch.randn(2, 3, 8, 8)
    e = explain(model, x, "epsilon")
    with torch.no_grad():
        torch.testing.assert_close(e.logits, model(x))
    assert len(prepare(model).affine_steps()) == 2
    assert float(e.ledger.relative_error().max()) <= 1e-5
    const_add = [en for en in e.ledger.entries if en.rule.startswith("norm(") and float(en.bias.abs().max()) > 0]
    assert const_add, "the added constant is booked as a bias"


def test_group_norm_and_functional_layer_norm_close_the_ledger() -> None:
    class Normed(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 8, 3)
            self.gn = nn.GroupNorm(4, 8)
            self.w = nn.Parameter(torch.rand(8) + 0.5)
            self.b = nn.Parameter(torch.randn(8))
            self.fc = nn.Linear(8, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = torch.relu(self.gn(self.conv(x))).permute(0, 2, 3, 1)
            h = F.layer_norm(h, (8,), self.w, self.b, 1e-5)
            return self.fc(h.mean((1, 2)))

    torch.manual_seed(0)
    model = Normed()
    nn.init.normal_(model.gn.bias)  # GroupNorm starts with β = 0
    x = torch.randn(2, 3, 10, 10)
    e = explain(model, x, "epsilon")
    with torch.no_grad():
        torch.testing.assert_close(e.logits, model(x))
    frozen = [en for en in e.ledger.entries if en.rule.startswith(("group_norm", "layer_norm"))]
    assert [en.rule.split("(")[0] for en in frozen] == ["group_norm", "layer_norm"]  # in forward order
    assert all(float(en.bias.abs().min()) > 0 for en in frozen)  # β absorbs relevance, booked as bias
    assert float(e.ledger.relative_error().max()) <= 1e-5


def _kinds(program) -> dict[str, int]:
    out: dict[str, int] = {}
    for s in program.steps:
        out[s.kind] = out.get(s.kind, 0) + 1
    return out


class Functional(nn.Module):
    """Functional layers with parameters, in-place ops, and a constant added."""

    def __init__(self) -> None:
        super().__init__()
        self.w1 = nn.Parameter(torch.randn(6, 3, 3, 3))
        self.b1 = nn.Parameter(torch.randn(6))
        self.w2 = nn.Parameter(torch.randn(4, 6))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.conv2d(x, self.w1, self.b1, padding=1)
        h = F.relu(h, inplace=True)
        g = h.clone()
        g += 0.5  # a constant added: acts like a bias
        h = h.relu_()
        return F.linear((h + g).mean((2, 3)), self.w2)


class FunctionalBatchNorm(nn.Module):
    """timm's BatchNormAct2d in miniature: F.batch_norm on registered statistics, after a rank assert."""

    def __init__(self, after_conv: bool = True) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.after_conv = after_conv
        self.weight, self.bias = nn.Parameter(torch.rand(4) + 0.5), nn.Parameter(torch.randn(4))
        self.register_buffer("running_mean", torch.randn(4))
        self.register_buffer("running_var", torch.rand(4) + 0.5)
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        if not self.after_conv:
            x = torch.relu(x)
        torch._assert(x.ndim == 4, "expected 4D input")  # a shape query of the conv's output
        x = F.batch_norm(x, self.running_mean, self.running_var, weight=self.weight, bias=self.bias, eps=1e-3)
        return self.fc(torch.relu(x).mean((2, 3)))


@pytest.mark.parametrize("after_conv", [True, False])
def test_functional_batch_norm_folds_or_becomes_a_per_channel_layer(after_conv: bool) -> None:
    torch.manual_seed(0)
    model = FunctionalBatchNorm(after_conv).eval()
    program = prepare(model)
    notes = program.canonizations
    assert ("folded batch_norm into conv" in notes) is after_conv
    assert any("kept as a per-channel affine layer" in n for n in notes) is not after_conv
    assert len(program.affine_steps()) == (2 if after_conv else 3)
    x = torch.randn(2, 3, 8, 8)
    e = explain(model, x, "epsilon_plus_flat")
    with torch.no_grad():
        torch.testing.assert_close(e.logits, model(x))
    assert float(e.ledger.relative_error().max()) <= 1e-5


def test_functional_batch_norm_in_training_mode_is_refused() -> None:
    class Training(FunctionalBatchNorm):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = F.batch_norm(self.conv(x), self.running_mean, self.running_var, training=True)
            return self.fc(x.mean((2, 3)))

    with pytest.raises(UnsupportedOpError, match="batch_norm in training mode.*training=False"):
        prepare(Training())
