"""Tracing and canonization: folds, functional ops, gates, and clear refusals."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from conftest import calibrated

from lrpcli import Explainer, UnsupportedOpError, explain, prepare


def _kinds(program) -> dict[str, int]:
    out: dict[str, int] = {}
    for s in program.steps:
        out[s.kind] = out.get(s.kind, 0) + 1
    return out


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


def test_squeeze_excitation_gate_sends_relevance_to_the_signal() -> None:
    model = calibrated("mobilenet_v3_small", size=64)
    program = prepare(model)
    gates = [s for s in program.steps if s.kind == "gate"]
    assert len(gates) == sum(type(m).__name__ == "SqueezeExcitation" for m in model.modules())
    e = explain(model, torch.randn(2, 3, 64, 64), "epsilon_plus_flat")
    assert float(e.ledger.relative_error().max()) <= 1e-5
    for entry in e.ledger.entries:
        if entry.rule == "gate":
            torch.testing.assert_close(entry.r_in, entry.r_out)


def test_channel_shuffle_and_chunk() -> None:
    model = calibrated("shufflenet_v2_x0_5", size=64)
    program = prepare(model)
    assert any(s.kind == "select" for s in program.steps)  # chunk(...)[i]
    e = explain(model, torch.randn(2, 3, 64, 64), "epsilon_plus_flat")
    assert torch.isfinite(e.relevance).all()
    assert float(e.ledger.relative_error().max()) <= 1e-5


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


class Branchy(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.fc = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv(x)
        if h.sum() > 0:  # data-dependent control flow: cannot be traced
            h = h * 2
        return self.fc(h.mean((2, 3)))


def test_untraceable_model_says_why() -> None:
    with pytest.raises(UnsupportedOpError, match="torch.fx could not trace"):
        explain(Branchy(), torch.randn(1, 3, 8, 8))


class TupleOut(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y = self.fc(x)
        return y, y


def test_tuple_output_is_refused_with_a_hint() -> None:
    with pytest.raises(UnsupportedOpError, match="wrap the model"):
        explain(TupleOut(), torch.randn(1, 4))


def test_unsupported_module_names_its_path() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.LocalResponseNorm(2), nn.Flatten(), nn.LazyLinear(2))
    model(torch.randn(1, 3, 6, 6))
    with pytest.raises(UnsupportedOpError) as info:
        explain(model, torch.randn(1, 3, 6, 6))
    assert info.value.module == "1" and "LocalResponseNorm" in str(info.value)


def test_rule_table_lists_every_step_with_a_reason() -> None:
    model = calibrated("vgg11", size=64)
    rows = Explainer(model, "epsilon_gamma_box", low=-3.0, high=3.0).rule_table()
    convs = [r for r in rows if r["op"] == "Conv2d"]
    assert convs[0]["rule"].startswith("zbox") and convs[0]["why"] == "first layer"
    assert all(r["rule"].startswith("gamma") and r["why"] == "type conv" for r in convs[1:])
    linears = [r for r in rows if r["op"] == "Linear"]
    assert all(r["rule"].startswith("epsilon") for r in linears)
    assert {r["rule"] for r in rows if r["op"] == "ReLU"} == {"pass"}
    assert {r["rule"] for r in rows if r["op"] == "MaxPool2d"} == {"winner_takes_all"}


class OddBlock(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cumsum(self.conv(x), dim=1)  # a running sum over channels: no LRP rule


class Odd(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.block = OddBlock()
        self.fc = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.block(x).mean((2, 3)))


def test_unsupported_function_names_op_node_module_and_hint() -> None:
    with pytest.raises(UnsupportedOpError) as info:
        explain(Odd(), torch.randn(1, 3, 8, 8))
    err = info.value
    assert err.op == "function cumsum" and err.node == "cumsum" and err.module == "block"
    assert "no LRP rule for this operation" in str(err)
    assert str(err).startswith("cannot propagate relevance through function cumsum (graph node 'cumsum' in module 'block')")


def test_masked_attention_is_refused_with_a_hint() -> None:
    class Masked(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.attn = nn.MultiheadAttention(8, 2, batch_first=True)
            self.register_buffer("mask", torch.zeros(5, 5, dtype=torch.bool))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.attn(x, x, x, attn_mask=self.mask)[0].sum(1)

    with pytest.raises(UnsupportedOpError, match="masked attention"):
        explain(Masked(), torch.randn(2, 5, 8))


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


def test_max_pooling_through_kept_indices_equals_the_adjoint() -> None:
    class Pools(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 6, 3)
            self.pool = nn.MaxPool2d(3, stride=2, padding=1, dilation=1, ceil_mode=True)
            self.adaptive = nn.AdaptiveMaxPool2d(3)
            self.fc = nn.Linear(24, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = self.adaptive(self.pool(torch.relu(self.conv(x))))
            h = F.max_pool2d(h, 2, 1)
            return self.fc(h.flatten(1))

    torch.manual_seed(0)
    model = Pools()
    x = torch.randn(3, 3, 15, 13)
    fast = Explainer(model, "epsilon")
    assert len(fast._pools) == 3
    slow = Explainer(model, "epsilon")
    slow._pools = {}  # re-run the pooling under autograd instead (its adjoint)
    a, b = fast(x), slow(x)
    assert torch.equal(a.relevance, b.relevance)
    assert float(a.ledger.relative_error().max()) <= 1e-6


def test_starting_lrp_does_not_import_torchvision() -> None:
    """torchvision costs almost a second to import; the default (embedded) model does not need it,
    and its functions are registered only once a model brought it in."""
    import subprocess
    import sys

    code = (
        "import sys, lrpcli.cli.common, lrpcli.pipeline\n"
        "from lrpcli.models.registry import load_model\n"
        "from lrpcli.config import load_config\n"
        "assert len(load_model(load_config(None).model).categories) == 1000\n"
        "from lrpcli.graph import STOCHASTIC_DEPTH, register_torchvision\n"
        "assert 'torchvision' not in sys.modules\n"
        "register_torchvision(); assert not STOCHASTIC_DEPTH and 'torchvision' not in sys.modules\n"
        "import torchvision.ops\n"
        "register_torchvision(); assert STOCHASTIC_DEPTH == [torchvision.ops.stochastic_depth]\n"
        "from lrpcli.linearize import ATTENTION_FUNCTIONS, FUNCTIONS\n"
        "from torchvision.models.swin_transformer import shifted_window_attention\n"
        "assert ATTENTION_FUNCTIONS[shifted_window_attention] == ('qkv_bias', 'proj_bias')\n"
        "assert 'qkv_bias' in FUNCTIONS[shifted_window_attention]\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
