"""Each affine rule against a slow, explicit matrix-form reference.

The reference writes a layer as its dense matrix ``M`` (out × in, from the Jacobian of the
plain forward) and computes every rule from the individual contributions ``c_ik = x_i M_ki``
with explicit sums, in float64. No code is shared with the engine's fast path.
"""

from __future__ import annotations

import pytest
import torch
from torch.autograd.functional import jacobian

from lrpcli.core.layers import Affine, from_module
from lrpcli.core.rules import AlphaBeta, Epsilon, Flat, Gamma, LRP0, WSquare, ZBox, ZPlus, make_rule

DT = torch.float64


def stab(z: torch.Tensor, eps: float) -> torch.Tensor:
    sign = torch.where(z >= 0, torch.ones_like(z), -torch.ones_like(z))
    return z + eps * sign


def dense(layer: Affine, x: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """The layer (without bias) as a matrix (out_features, in_features) for input shape x[0]."""
    x0 = x[:1]
    jac = jacobian(lambda t: layer.forward(t, weight, None), x0)
    return jac.reshape(jac.shape[1 : 1 + (jac.ndim - 2) // 2].numel(), x0[0].numel())


def epsilon_of(rule, z: torch.Tensor) -> float:
    """The rule's ε for one image's pre-activations ``z``: a number, or "0.25std" read as text."""
    if isinstance(rule.epsilon, str):
        return float(rule.epsilon[:-3]) * float(z.std())
    return rule.epsilon


def reference(rule, layer: Affine, x: torch.Tensor, r: torch.Tensor, bias: torch.Tensor | None, bounds=None):
    """Relevance at the input of `layer`, one image at a time, from explicit contributions.

    Bias treatments: ``ignore`` sets b = 0 in every denominator; ``distribute`` adds each output's
    bias share t_k = b'_k s_k to its inputs in proportion to |x_i M_ki| (uniform over the inputs it
    is connected to when all are zero). ``coverage``: every contribution c_ik is divided by
    c_i = number of outputs input i is connected to. The bias shares Σ_k t_k per image are left
    in ``reference.shares``.
    """
    out = []
    M = dense(layer, x)
    M1 = dense(layer, x, torch.ones_like(layer.weight))
    M2 = dense(layer, x, layer.weight**2)
    treatment = getattr(rule, "bias", "absorb")
    cover = 1.0 / M1.sum(0) if getattr(rule, "coverage", False) else torch.ones(M.shape[1], dtype=DT)
    shares = []
    for n in range(x.shape[0]):
        xi = x[n].reshape(-1)
        rk = r[n].reshape(-1)
        b = torch.zeros(M.shape[0], dtype=DT) if bias is None else layer.bias_view(bias, r.ndim).expand_as(r[:1]).reshape(-1)
        c = (xi * cover)[None, :] * M  # c[k, i]
        z_rule = c.sum(1) + b  # the pre-activations the rule sees (ε = factor · their std)
        if treatment == "ignore":
            b = torch.zeros_like(b)
        cp, cn = c.clamp(min=0), c.clamp(max=0)
        t = torch.zeros_like(rk)  # the bias share of each output
        if isinstance(rule, Epsilon):  # includes LRP0
            z = c.sum(1) + b
            den = stab(z, epsilon_of(rule, z_rule))
            s = torch.where(den == 0, torch.zeros_like(den), rk / den)
            ri = (c * s[:, None]).sum(0)
            t = b * s
        elif isinstance(rule, ZPlus):
            p = cp.sum(1) + b.clamp(min=0)
            s = rk / stab(p, rule.stabilizer)
            ri = (cp * s[:, None]).sum(0)
            t = b.clamp(min=0) * s
        elif isinstance(rule, AlphaBeta):
            p = cp.sum(1) + b.clamp(min=0)
            q = cn.sum(1) + b.clamp(max=0)
            sp, sn = rk / stab(p, rule.stabilizer), rk / stab(q, rule.stabilizer)
            ri = (rule.alpha * cp * sp[:, None] - rule.beta * cn * sn[:, None]).sum(0)
            t = rule.alpha * b.clamp(min=0) * sp - rule.beta * b.clamp(max=0) * sn
        elif isinstance(rule, Gamma):
            g = rule.gamma
            z = c.sum(1) + b
            ri = torch.zeros_like(xi)
            for k in range(M.shape[0]):
                if z[k] > 0:
                    num, bk = c[k] + g * cp[k], b[k] + g * b[k].clamp(min=0)
                    den = z[k] + g * (cp[k].sum() + b[k].clamp(min=0))
                elif z[k] < 0:
                    num, bk = c[k] + g * cn[k], b[k] + g * b[k].clamp(max=0)
                    den = z[k] + g * (cn[k].sum() + b[k].clamp(max=0))
                else:
                    continue
                ri = ri + num * rk[k] / stab(den, rule.stabilizer)
                t[k] = bk * rk[k] / stab(den, rule.stabilizer)
        elif isinstance(rule, ZBox):
            lo, hi = bounds
            li = lo.expand_as(x[:1]).reshape(-1) * cover
            hi_ = hi.expand_as(x[:1]).reshape(-1) * cover
            tb = c - li[None, :] * M.clamp(min=0) - hi_[None, :] * M.clamp(max=0)
            ri = (tb * (rk / stab(tb.sum(1), rule.stabilizer))[:, None]).sum(0)
        elif isinstance(rule, Flat):
            m = M1 * cover[None, :]
            ri = (m * (rk / stab(m.sum(1), rule.stabilizer))[:, None]).sum(0)
        elif isinstance(rule, WSquare):
            m = M2 * cover[None, :]
            ri = (m * (rk / stab(m.sum(1) + b**2, rule.stabilizer))[:, None]).sum(0)
        else:
            raise AssertionError(rule)
        if treatment == "distribute":
            a = c.abs()  # |x_i M_ki| (divided by c_i with coverage: the bias share avoids the grid too)
            for k in range(M.shape[0]):
                if a[k].sum() > 0:
                    ri = ri + t[k] * a[k] / a[k].sum()
                else:
                    ri = ri + t[k] * (M1[k] != 0) / (M1[k] != 0).sum()
        shares.append(t.sum())
        out.append(ri.reshape(x.shape[1:]))
    reference.shares = torch.stack(shares)  # type: ignore[attr-defined]
    return torch.stack(out)


def make_layers() -> dict[str, tuple[Affine, tuple[int, ...]]]:
    torch.manual_seed(0)
    mods = {
        "linear": (torch.nn.Linear(7, 5), (7,)),
        "conv_stride_pad": (torch.nn.Conv2d(3, 4, 3, stride=2, padding=1), (3, 7, 6)),
        "conv_dilation_groups": (torch.nn.Conv2d(4, 6, 3, padding=2, dilation=2, groups=2), (4, 6, 6)),
        "conv_depthwise": (torch.nn.Conv2d(4, 4, 3, padding=1, groups=4), (4, 5, 5)),
        "conv1d": (torch.nn.Conv1d(2, 3, 3, stride=2, padding=1), (2, 9)),
    }
    layers = {}
    for name, (m, shape) in mods.items():
        m = m.to(DT)
        layers[name] = (from_module(m), shape)
    # asymmetric "same" padding folded in front of a strided conv (as in EfficientNet-Lite)
    conv = torch.nn.Conv2d(3, 4, 3, stride=2).to(DT)
    a = from_module(conv)
    a.pre_pad = (0, 1, 0, 1)
    layers["conv_prepad"] = (a, (3, 6, 6))
    return layers


LAYERS = make_layers()
RULES = [
    LRP0(),
    Epsilon(0.1),
    Epsilon(1e-6),
    ZPlus(1e-6),
    AlphaBeta(2.0, 1.0, 1e-6),
    AlphaBeta(1.0, 0.0, 1e-6),
    Gamma(0.25, 1e-6),
    Gamma(1.0, 1e-6),
    Flat(1e-6),
    WSquare(1e-6),
    ZBox(None, None, 1e-6),
    # bias treatments, layer-adaptive ε, coverage normalisation
    *(Epsilon(e, bias=t) for e in (0.1, "0.25std") for t in ("distribute", "ignore")),
    Epsilon("0.5std"),
    *(ZPlus(1e-6, bias=t) for t in ("distribute", "ignore")),
    *(AlphaBeta(2.0, 1.0, 1e-6, bias=t) for t in ("distribute", "ignore")),
    *(Gamma(0.25, 1e-6, bias=t) for t in ("distribute", "ignore")),
    Flat(1e-6, coverage=True),
    WSquare(1e-6, coverage=True),
    ZBox(None, None, 1e-6, coverage=True),
    ZPlus(1e-6, coverage=True),
    Epsilon("0.25std", bias="distribute", coverage=True),
    Gamma(0.25, 1e-6, coverage=True),
]


@pytest.mark.parametrize("layer_name", sorted(LAYERS))
@pytest.mark.parametrize("rule", RULES, ids=lambda r: r.describe())
@pytest.mark.parametrize("signed", [False, True], ids=["nonneg_input", "signed_input"])
@pytest.mark.parametrize("with_bias", [True, False], ids=["bias", "no_bias"])
def test_rule_matches_matrix_reference(layer_name: str, rule, signed: bool, with_bias: bool) -> None:
    layer, shape = LAYERS[layer_name]
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(2, *shape, generator=gen, dtype=DT)
    if not signed:
        x = x.clamp(min=0)
    bias = layer.bias if with_bias else None
    z = layer.forward(x, None, bias)
    r = torch.randn(z.shape, generator=gen, dtype=DT) * z.abs()
    bounds = None
    if isinstance(rule, ZBox):
        lo = torch.full((1,) + shape, -3.0, dtype=DT) if len(shape) == 1 else torch.full((1, shape[0]) + (1,) * (len(shape) - 1), -3.0, dtype=DT)
        bounds = (lo, -lo)
    got, absorbed = rule.apply(layer, x, z.clone(), r, bias, bounds)
    want = reference(rule, layer, x, r, bias, bounds)
    assert got.shape == x.shape
    torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-9 * float(want.abs().max()))
    # the ledger: what went in minus what came out is exactly what the rule says it absorbed
    lost = r.flatten(1).sum(1) - got.flatten(1).sum(1)
    torch.testing.assert_close(absorbed.bias + absorbed.stabilizer + absorbed.dropped, lost, rtol=1e-9, atol=1e-9)
    treatment = getattr(rule, "bias", "absorb")
    if treatment == "distribute" and bias is not None:  # nothing booked as bias; the shares went on
        assert float(absorbed.bias.abs().max()) == 0.0
        torch.testing.assert_close(absorbed.distributed, reference.shares, rtol=1e-9, atol=1e-9)
    elif treatment == "absorb" and bias is not None and hasattr(rule, "bias"):
        torch.testing.assert_close(absorbed.bias, reference.shares, rtol=1e-9, atol=1e-9)
    if treatment == "ignore":
        assert float(absorbed.bias.abs().max()) == 0.0


def test_bias_free_lrp0_is_conservative() -> None:
    layer, shape = LAYERS["conv_stride_pad"]
    x = torch.randn(2, *shape, dtype=DT)
    z = layer.forward(x, None, None)
    r = torch.randn_like(z)
    got, absorbed = LRP0().propagate(layer, x, z, r, None)
    torch.testing.assert_close(got.flatten(1).sum(1), r.flatten(1).sum(1) - absorbed.dropped)
    assert float(absorbed.bias.abs().max()) == 0.0


def test_alpha_beta_requires_difference_one() -> None:
    with pytest.raises(ValueError, match="alpha - beta must equal 1"):
        AlphaBeta(2.0, 2.0)
    with pytest.raises(ValueError, match=">= 0"):
        AlphaBeta(-1.0, -2.0)


def test_make_rule_errors_name_the_fix() -> None:
    with pytest.raises(ValueError, match="unknown rule 'gama'; choose one of"):
        make_rule("gama")
    with pytest.raises(ValueError, match="accepts"):
        make_rule("gamma", epsilon=1.0)
    assert make_rule("gamma", gamma=0.5) == Gamma(0.5)


def test_float32_matches_float64_reference() -> None:
    layer64, shape = LAYERS["conv_stride_pad"]
    layer32 = Affine(layer64.weight.float(), layer64.bias.float(), "conv", stride=layer64.stride,
                     padding=layer64.padding, dilation=layer64.dilation, groups=layer64.groups)  # fmt: skip
    x = torch.randn(3, *shape, dtype=DT).clamp(min=0)
    z = layer64.forward(x, None, layer64.bias)
    r = z.clone()
    for rule in (Epsilon(1e-6), ZPlus(), Gamma(0.25), AlphaBeta(2, 1)):
        got, _ = rule.propagate(layer32, x.float(), z.float(), r.float(), layer32.bias)
        want = reference(rule, layer64, x, r, layer64.bias)
        torch.testing.assert_close(got.double(), want, rtol=1e-4, atol=1e-5 * float(want.abs().max()))


def test_gamma_drops_relevance_at_outputs_that_are_exactly_zero() -> None:
    lin = torch.nn.Linear(4, 3).to(DT)
    with torch.no_grad():
        lin.weight[1] = 0.0
        lin.bias[1] = 0.0  # output 1 is exactly zero for every input
    layer = from_module(lin)
    x = torch.rand(2, 4, dtype=DT)
    z = layer.forward(x, None, layer.bias)
    r = torch.ones_like(z)
    rule = Gamma(0.25)
    got, absorbed = rule.propagate(layer, x, z, r, layer.bias)
    torch.testing.assert_close(got, reference(rule, layer, x, r, layer.bias))
    torch.testing.assert_close(absorbed.dropped, torch.ones(2, dtype=DT))  # R of the zero output, per image


@pytest.mark.parametrize("layer_name", sorted(LAYERS))
@pytest.mark.parametrize("with_bias", [True, False], ids=["bias", "no_bias"])
@pytest.mark.parametrize("gamma", [0.25, 1.0])
@pytest.mark.parametrize("signed", [False, True], ids=["nonneg_input", "signed_input"])
def test_gamma_on_positive_outputs_needs_no_z(layer_name: str, with_bias: bool, gamma: float, signed: bool) -> None:
    """Relevance only where z > 0 (the layer feeds a ReLU): the form with weights W + γW⁺ and
    W + γW⁻, given no z at all (as the engine calls it), equals the reference."""
    layer, shape = LAYERS[layer_name]
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(2, *shape, generator=gen, dtype=DT)
    if not signed:
        x = x.clamp(min=0)
    bias = layer.bias if with_bias else None
    z = layer.forward(x, None, bias)
    r = torch.rand(z.shape, generator=gen, dtype=DT) * z.clamp(min=0)
    assert bool((r == 0).any()) and bool((r > 0).any())
    rule = Gamma(gamma, 1e-6)
    assert rule.uses_output(layer, positive=False) and not rule.uses_output(layer, positive=True)
    got, absorbed = rule.propagate(layer, x, None, r, bias, None, positive=True)
    want = reference(rule, layer, x, r, bias)
    torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-9 * float(want.abs().max()))
    lost = r.flatten(1).sum(1) - got.flatten(1).sum(1)
    torch.testing.assert_close(absorbed.bias + absorbed.stabilizer + absorbed.dropped, lost, rtol=1e-9, atol=1e-9)
