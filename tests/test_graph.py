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


class FusedAttention(nn.Module):
    """timm's ViT attention in miniature: optional forward arguments, (q, k, v) stacked in front of the
    batch and unbound, F.scaled_dot_product_attention."""

    def __init__(self, dim: int = 8, heads: int = 2) -> None:
        super().__init__()
        self.heads = heads
        self.embed = nn.Linear(3, dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.head = nn.Linear(dim, 4)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None, is_causal: bool = False) -> torch.Tensor:
        t = self.embed(x.flatten(2).transpose(1, 2))  # (B, N, C)
        b, n, c = t.shape
        q, k, v = self.qkv(t).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4).unbind(0)
        if is_causal:  # control flow on an optional argument: traced at its default
            attn_mask = None
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, is_causal=is_causal)
        t = t + self.proj(y.transpose(1, 2).reshape(b, n, c))
        return self.head(t.mean(1))


@pytest.mark.parametrize("batch", [1, 2, 3])  # 3: as many images as stacked (q, k, v)
def test_fused_attention_with_optional_arguments_closes_and_conserves(batch: int) -> None:
    torch.manual_seed(0)
    model = FusedAttention().eval()
    program = prepare(model)
    assert [s.op for s in program.steps if s.kind == "input"] == ["input"]
    assert [s.frozen.name for s in program.steps if s.kind == "frozen"] == ["attention"]
    x = torch.randn(batch, 3, 4, 4)
    e = explain(model, x, "epsilon")
    with torch.no_grad():
        torch.testing.assert_close(e.logits, model(x))
    assert float(e.ledger.relative_error().max()) <= 1e-5
    e0 = explain(model, x, {"linear": "lrp0"}, ignore_bias=True, stabilizer=0.0)
    torch.testing.assert_close(e0.ledger.pixels, e0.ledger.output, rtol=1e-5, atol=0)


def test_a_second_input_without_default_is_refused() -> None:
    class TwoInputs(nn.Module):
        def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            return (x + y).flatten(1)

    with pytest.raises(UnsupportedOpError, match="a second input 'y'.*need a default"):
        prepare(TwoInputs())


def test_efficient_channel_attention_gate_seen_through_view_and_expand_as() -> None:
    """timm's ECA: ``x * sigmoid(conv1d(mean(x))).view(...).expand_as(x)`` is signal × gate."""

    class Eca(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv, self.gate_conv, self.fc = nn.Conv2d(3, 4, 3), nn.Conv1d(1, 1, 3, padding=1), nn.Linear(4, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = torch.relu(self.conv(x))
            y = self.gate_conv(x.mean((2, 3)).view(x.shape[0], 1, -1)).sigmoid()
            x = x * y.view(x.shape[0], -1, 1, 1).expand_as(x)
            return self.fc(x.mean((2, 3)))

    torch.manual_seed(0)
    model = Eca().eval()
    assert [s.kind for s in prepare(model).steps if s.op == "mul"] == ["gate"]
    e = explain(model, torch.randn(2, 3, 8, 8), "epsilon_plus_flat")
    assert float(e.ledger.relative_error().max()) <= 1e-5


def test_constant_powers_are_element_wise_and_signal_exponents_are_refused() -> None:
    """StarReLU (MetaFormer): ``s · relu(x)² + b``, written with ``**``, ``pow`` and ``square``."""

    class Star(nn.Module):
        def __init__(self, exponent_from_input: bool = False) -> None:
            super().__init__()
            self.conv, self.fc, self.live = nn.Conv2d(3, 4, 3), nn.Linear(4, 2), exponent_from_input

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = self.conv(x)
            x = 0.8 * torch.relu(x) ** 2 + torch.pow(x, 3) + x.square() - 0.1
            if self.live:
                x = torch.pow(2.0, x)
            return self.fc(x.mean((2, 3)))

    torch.manual_seed(0)
    e = explain(Star().eval(), torch.randn(2, 3, 8, 8), "epsilon")
    assert float(e.ledger.relative_error().max()) <= 1e-5
    with pytest.raises(UnsupportedOpError, match="pow"):
        prepare(Star(exponent_from_input=True))
