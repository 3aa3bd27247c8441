"""LayerNorm and attention with σ / softmax weights frozen, against explicit matrix-form references."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from lrpcli import explain
from lrpcli.core.linearize import AttentionLin, ScaledDotProductAttentionLin, from_module

EPS = 1e-6


def _epsilon_reference(contrib: torch.Tensor, y: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """R_j = Σ_i z_ij r_i / (y_i + ε sign y_i) for explicit contributions z (outputs i × inputs j)."""
    return (contrib * (r / (y + EPS * torch.where(y >= 0, 1.0, -1.0)))[:, None]).sum(0)


def test_layer_norm_rule_matches_the_explicit_matrix() -> None:
    torch.manual_seed(0)
    c = 6
    ln = nn.LayerNorm(c).double()
    nn.init.normal_(ln.weight)
    nn.init.normal_(ln.bias)
    x = torch.randn(3, c, dtype=torch.float64)
    e = explain(ln, x, "epsilon", target=2, stabilizer=EPS)
    with torch.no_grad():
        y = ln(x)
    for n in range(3):
        xs = x[n]
        rstd = 1 / torch.sqrt(xs.var(unbiased=False) + ln.eps)
        lin = ln.weight[:, None] * rstd * (torch.eye(c, dtype=torch.float64) - 1.0 / c)  # ∂y/∂x with σ frozen
        r = torch.zeros(c, dtype=torch.float64)
        r[2] = y[n, 2]
        ref = _epsilon_reference(lin.detach() * xs[None, :], y[n], r)
        torch.testing.assert_close(e.relevance[n], ref, rtol=1e-9, atol=1e-12)
        # what the ledger books as the bias is β's share: Σ_i β_i r_i / stab(y_i)
        s = r / (y[n] + EPS * torch.sign(y[n]))
        bias = next(en for en in e.ledger.entries if en.rule.startswith("layer_norm")).bias[n]
        torch.testing.assert_close(bias, (ln.bias.detach() * s).sum())


class SelfAttention(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(8, 2, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.attn(x, x, x, need_weights=False)[0].flatten(1)


def test_attention_rule_matches_the_explicit_matrix_and_sends_nothing_through_queries() -> None:
    torch.manual_seed(1)
    model = SelfAttention().double().eval()
    nn.init.normal_(model.attn.in_proj_bias)
    nn.init.normal_(model.attn.out_proj.bias)
    tokens, dim, heads = 4, 8, 2
    x = torch.randn(2, tokens, dim, dtype=torch.float64)
    target = 5  # token 0, feature 5
    e = explain(model, x, "epsilon", target=target, stabilizer=EPS)
    lin = from_module(model.attn)
    assert isinstance(lin, AttentionLin)
    with torch.no_grad():
        y_module = model(x)
    wv = lin.wv
    wo = lin.wo
    hd = dim // heads
    for n in range(2):
        y, attn = lin.forward(x[n : n + 1], bias_free=False)  # attn: (1, heads, tokens, tokens)
        torch.testing.assert_close(y.flatten(), y_module[n])
        # explicit contributions of input (m, j) to output (l, i), attention weights constant
        z = torch.zeros(tokens, dim, tokens, dim, dtype=torch.float64)
        for h in range(heads):
            rows = slice(h * hd, (h + 1) * hd)
            mix = wo[:, rows] @ wv[rows]  # (dim out, dim in) through head h
            for l in range(tokens):
                for m in range(tokens):
                    z[l, :, m, :] += attn[0, h, l, m] * mix * x[n, m][None, :]
        r = torch.zeros(tokens * dim, dtype=torch.float64)
        r[target] = y_module[n, target]
        ref = _epsilon_reference(z.reshape(tokens * dim, tokens * dim), y_module[n], r)
        torch.testing.assert_close(e.relevance[n].flatten(), ref, rtol=1e-9, atol=1e-12)
    assert float(e.ledger.relative_error().max()) <= 1e-9


@pytest.mark.parametrize(("mask", "causal", "scale"), [("none", False, None), ("float", False, 0.3),
                                                       ("bool", False, None), ("none", True, None)])  # fmt: skip
def test_scaled_dot_product_attention_matches_torch_and_is_linear_in_the_values(
    mask: str, causal: bool, scale: float | None
) -> None:
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 2, 5, 4, generator=g, dtype=torch.float64) for _ in range(3))
    m = {"none": None, "float": torch.randn(5, 5, generator=g, dtype=torch.float64),
         "bool": torch.rand(5, 5, generator=g) > 0.3}[mask]  # fmt: skip
    if m is not None and m.dtype == torch.bool:
        m[:, 0] = True  # every query attends to something
    lin = ScaledDotProductAttentionLin(causal, scale, False)
    y, weights = lin.run((q, k, v, m), bias_free=False)
    torch.testing.assert_close(y, F.scaled_dot_product_attention(q, k, v, attn_mask=m, is_causal=causal, scale=scale))
    v2 = torch.randn_like(v)
    torch.testing.assert_close(lin.apply(2 * v - 3 * v2, weights, False), 2 * y - 3 * lin.apply(v2, weights, False))


@pytest.mark.parametrize("functional", [True, False])
def test_rms_norm_equals_torch_and_closes_the_ledger(functional: bool) -> None:
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed, self.norm, self.head = nn.Linear(4, 6), nn.RMSNorm(6, eps=1e-6), nn.Linear(6, 3)
            nn.init.uniform_(self.norm.weight, 0.5, 1.5)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            t = self.embed(x)
            t = F.rms_norm(t, (6,), self.norm.weight, 1e-6) if functional else self.norm(t)
            return self.head(t.mean(1))

    torch.manual_seed(0)
    model, x = Net().eval(), torch.randn(2, 5, 4)
    e = explain(model, x, "epsilon")
    with torch.no_grad():
        torch.testing.assert_close(e.logits, model(x))
    assert any(en.rule.startswith("rms_norm") for en in e.ledger.entries)
    assert float(e.ledger.relative_error().max()) <= 1e-5
    e0 = explain(model, x, {"linear": "lrp0"}, ignore_bias=True, stabilizer=0.0)
    torch.testing.assert_close(e0.ledger.pixels, e0.ledger.output, rtol=1e-5, atol=0)
