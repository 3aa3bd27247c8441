"""Tests for lrpcli.core.graph: tracing, node classification, gates and clear refusals."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from conftest import calibrated

from lrpcli import Explainer, UnsupportedOpError, explain, prepare


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
    assert len(fast.analysis.pools) == 3
    slow = Explainer(model, "epsilon")
    slow.analysis = replace(slow.analysis, pools={})  # re-run the pooling under autograd instead (its adjoint)
    a, b = fast(x), slow(x)
    assert torch.equal(a.relevance, b.relevance)
    assert float(a.ledger.relative_error().max()) <= 1e-6


def test_starting_lrp_does_not_import_torchvision() -> None:
    """torchvision costs almost a second to import; the default (embedded) model does not need it,
    and its functions are registered only once a model brought it in."""
    import subprocess
    import sys

    code = (
        "import sys, lrpcli.cli, lrpcli.run.pipeline\n"
        "from lrpcli.models.sources import load_model\n"
        "from lrpcli.config import load_config\n"
        "assert len(load_model(load_config(None).model).categories) == 1000\n"
        "from lrpcli.core.graph import STOCHASTIC_DEPTH, register_torchvision\n"
        "assert 'torchvision' not in sys.modules\n"
        "register_torchvision(); assert not STOCHASTIC_DEPTH and 'torchvision' not in sys.modules\n"
        "import torchvision.ops\n"
        "register_torchvision(); assert STOCHASTIC_DEPTH == [torchvision.ops.stochastic_depth]\n"
        "from lrpcli.core.linearize import ATTENTION_FUNCTIONS, FUNCTIONS\n"
        "from torchvision.models.swin_transformer import shifted_window_attention\n"
        "assert ATTENTION_FUNCTIONS[shifted_window_attention] == ('qkv_bias', 'proj_bias')\n"
        "assert 'qkv_bias' in FUNCTIONS[shifted_window_attention]\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
