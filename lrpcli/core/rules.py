"""LRP rules, each a small class named after the literature.

An affine rule turns the relevance ``R`` at a layer's output into relevance at its input and
says, per image, how much it absorbed and by what (bias, stabiliser, dropped). The general
form (Bach et al. 2015; Montavon et al. 2019) with a weight transform ρ is::

    z'_k = Σ_i a_i ρ(w_ik) + ρ(b_k)      s_k = R_k / stab(z'_k)      R_i = a_i Σ_k ρ(w_ik) s_k

Each rule below computes exactly what Zennit 0.5 computes for the same name, but with the
fewest passes: the forward output ``z`` is reused, ``W⁻ = W - W⁺`` is never given its own pass
when the input is non-negative, and constant terms (flat, w², box bounds) are cached.

Steps that are not convolutions or dense layers get fixed rules that the engine applies by
step kind (:class:`lrpcli.core.program.StepKind`).

Long because every rule is here, side by side with the shared denominator and bias helpers, so
that the rules can be read and checked against each other (``tests/test_rules.py`` holds each
against one matrix-form reference).
"""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from typing import Any, ClassVar, NamedTuple

import torch
from torch import Tensor

from .layers import Affine


class Absorbed(NamedTuple):
    """Relevance a layer absorbed, per image (float64, shape ``(N,)``)."""

    bias: Tensor
    stabilizer: Tensor
    dropped: Tensor


def psum(t: Tensor) -> Tensor:
    """Per-image sum (accumulated in the tensor's dtype, returned as float64)."""
    return t.reshape(t.shape[0], -1).sum(1).double()


def share(r: Tensor, z: Tensor, epsilon: float, *, reuse: bool = False) -> tuple[Tensor, Tensor, Tensor]:
    """``s = r / (z + ε·sign(z))`` with what the stabiliser absorbs, ``Σ s·ε·sign(z)``, and what is
    dropped where the denominator is exactly zero (ε = 0 only), per image.

    ``reuse``: ``z`` is the caller's own temporary (not a kept activation) and becomes ``s``, so
    that no third tensor of this size is alive at once.
    """
    n = r.shape[0]
    if epsilon == 0.0:
        zero = z == 0
        s = torch.where(zero, torch.zeros_like(r), r / torch.where(zero, torch.ones_like(z), z))
        return s, _zeros(n, r.device), psum(torch.where(zero, r, torch.zeros_like(r)))
    # ε·sign(z) with sign(0) = +1 (copysign: −0.0 counts as negative, which changes no result since
    # such an output carries no relevance); torch.where is several times slower on CPU
    shift = torch.copysign(_scalar(epsilon, z), z)
    s = z.add_(shift) if reuse and z.shape == r.shape else torch.add(z, shift)
    torch.div(r, s, out=s)
    return s, psum(shift.mul_(s)), _zeros(n, r.device)


def _scalar(v: float, like: Tensor) -> Tensor:
    return torch.tensor(v, dtype=like.dtype, device=like.device)


def _zeros(n: int, device: torch.device) -> Tensor:
    return torch.zeros(n, dtype=torch.float64, device=device)


def _bias_part(layer: Affine, s: Tensor, bias: Tensor | None) -> Tensor:
    """Per-image ``Σ_k s_k b_k`` (the bias broadcast over positions): one reduction, no product tensor."""
    if bias is None:
        return _zeros(s.shape[0], s.device)
    return (_channel_sums(layer, s) * bias.double()).sum(1)


def _channel_sums(layer: Affine, t: Tensor) -> Tensor:
    """Per-image, per-output-channel sums ``(N, C)`` in float64 (the axes a bias broadcasts over)."""
    if layer.kind == "linear":
        return t.reshape(t.shape[0], -1, t.shape[-1]).sum(1).double()
    return t.reshape(t.shape[0], t.shape[1], -1).sum(2).double()


class Rule(ABC):
    """Base of all rules: a registry name and its parameters."""

    name: ClassVar[str]
    #: rules that do not multiply by the layer input (flat, w²) ignore its values
    uses_input: ClassVar[bool] = True

    def params(self) -> dict[str, Any]:
        """The rule's parameters, for reports."""
        return {k: v for k, v in vars(self).items() if not k.startswith("_")}

    def describe(self) -> str:
        """``name(p=v, ...)``."""
        p = ", ".join(f"{k}={v}" for k, v in self.params().items())
        return f"{self.name}({p})" if p else self.name

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.params().items())})"

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and self.params() == other.params()  # type: ignore[union-attr]

    def __hash__(self) -> int:
        return hash((type(self), tuple(sorted(self.params().items(), key=lambda kv: kv[0]))))


class AffineRule(Rule):
    """A rule for convolutions and dense layers."""

    #: whether ``propagate`` reads the layer output ``z`` (the engine passes ``None`` otherwise)
    needs_output: ClassVar[bool] = True
    #: whether an input that is exactly zero always gets zero relevance (``R_i = x_i · c_i``)
    zero_at_zero_input: ClassVar[bool] = True

    def uses_output(self, layer: Affine, positive: bool) -> bool:
        """Whether ``propagate`` reads ``z`` for ``layer``; ``positive``: see :meth:`propagate`."""
        return self.needs_output

    @abstractmethod
    def propagate(
        self,
        layer: Affine,
        x: Tensor,
        z: Tensor,
        relevance: Tensor,
        bias: Tensor | None,
        bounds: tuple[Tensor, Tensor] | None = None,
        positive: bool = False,
        reuse: bool = False,
    ) -> tuple[Tensor, Absorbed]:
        """Relevance at the input of ``layer``.

        ``x`` is the layer input, ``z`` its output computed with ``bias`` (``None`` when biases
        are ignored, and then ``z`` has none), ``bounds`` the box bounds at the layer input.
        ``z`` is ``None`` where :meth:`uses_output` says the rule does not read it. For rules that
        read it, the engine may pass ``relu(z)`` instead when the relevance is provably zero
        wherever ``relu(z)`` is (such positions then give ``s = 0`` either way); ``positive``
        says exactly that: ``relevance`` is zero wherever ``z ≤ 0``. ``reuse``: nothing reads
        ``z`` afterwards, so the rule may overwrite it instead of allocating (the engine's case).
        """


def _positive_part(layer: Affine, x: Tensor, bias: Tensor | None, nonneg: bool) -> Tensor:
    """``p = x⁺W⁺ + x⁻W⁻ + b⁺``: the sum of positive contributions."""
    bp = None if bias is None else bias.clamp(min=0)
    wp = layer.weight_pos
    if nonneg:
        return layer.forward(x, wp, bp)
    wn = layer.weight_neg
    return layer.forward(x.clamp(min=0), wp, bp) + layer.forward(x.clamp(max=0), wn)


def _contributions(layer: Affine, x: Tensor, bias: Tensor | None, nonneg: bool) -> tuple[Tensor, Tensor]:
    """``(p, n)``: the sums of positive (``x⁺W⁺ + x⁻W⁻ + b⁺``) and negative contributions, in one pass."""
    wp = layer.weight_pos
    wn = layer.weight_neg
    both = layer.cached("w+-", lambda: torch.cat([wp, wn]))
    b2 = None if bias is None else torch.cat([bias.clamp(min=0), bias.clamp(max=0)])
    if nonneg:
        out = _forward_stacked(layer, x, both, b2)
    else:
        swapped = layer.cached("w-+", lambda: torch.cat([wn, wp]))
        out = _forward_stacked(layer, x.clamp(min=0), both, b2) + _forward_stacked(layer, x.clamp(max=0), swapped)
    p, n = out.chunk(2, dim=-1 if layer.kind == "linear" else 1)
    return p, n


def _forward_stacked(layer: Affine, x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """The layer with ``[W₁; W₂]`` stacked along outputs (grouped convolutions are split per half)."""
    if (layer.kind == "conv" and layer.groups > 1) or layer.kind == "scale":
        half = weight.shape[0] // 2
        b1, b2 = (None, None) if bias is None else (bias[:half], bias[half:])
        return torch.cat([layer.forward(x, weight[:half], b1), layer.forward(x, weight[half:], b2)], 1)
    return layer.forward(x, weight, bias)


def value_key(t: Tensor) -> tuple[Any, ...]:
    """A hashable key for a (small) tensor's shape, dtype, device and values."""
    return (tuple(t.shape), t.dtype, str(t.device), t.detach().cpu().numpy().tobytes())


def _nonneg(x: Tensor, layer: Affine) -> bool:
    """Whether the input has no negative entries (known from the graph, else checked)."""
    return layer.input_nonneg or not bool((x < 0).any())


class Epsilon(AffineRule):
    """ε-rule (Bach et al. 2015): ``s = R / (z + ε·sign(z))``, ``R_i = x_i (Wᵀ s)_i``."""

    name = "epsilon"

    def __init__(self, epsilon: float = 1e-6) -> None:
        if epsilon < 0:
            raise ValueError(f"epsilon must be >= 0, got {epsilon}")
        self.epsilon = float(epsilon)

    def propagate(self, layer, x, z, relevance, bias, bounds=None, positive=False, reuse=False):  # type: ignore[override]
        s, stab, dropped = share(relevance, z, self.epsilon, reuse=reuse)
        r_in = layer.transpose(s, x.shape).mul_(x)
        return r_in, Absorbed(_bias_part(layer, s, bias), stab, dropped)


class LRP0(Epsilon):
    """LRP-0 (Bach et al. 2015): the ε-rule with ε = 0; relevance at exact zeros is dropped."""

    name = "lrp0"

    def __init__(self) -> None:
        super().__init__(0.0)

    def params(self) -> dict[str, Any]:
        return {}


class ZPlus(AffineRule):
    """z⁺-rule (Montavon et al. 2017): only positive contributions ``x⁺W⁺ + x⁻W⁻ + b⁺`` count."""

    name = "zplus"
    needs_output = False

    def __init__(self, stabilizer: float = 1e-6) -> None:
        self.stabilizer = float(stabilizer)

    def propagate(self, layer, x, z, relevance, bias, bounds=None, positive=False, reuse=False):  # type: ignore[override]
        nonneg = _nonneg(x, layer)
        p = _positive_part(layer, x, bias, nonneg)
        s, stab, dropped = share(relevance, p, self.stabilizer, reuse=True)
        wp = layer.weight_pos
        if nonneg:
            r_in = layer.transpose(s, x.shape, wp).mul_(x)
        else:
            wn = layer.weight_neg
            r_in = x.clamp(min=0) * layer.transpose(s, x.shape, wp) + x.clamp(max=0) * layer.transpose(
                s, x.shape, wn
            )
        bp = None if bias is None else bias.clamp(min=0)
        return r_in, Absorbed(_bias_part(layer, s, bp), stab, dropped)


class AlphaBeta(AffineRule):
    """αβ-rule (Bach et al. 2015): ``α·(positive share) − β·(negative share)``, α − β = 1."""

    name = "alpha_beta"

    def __init__(self, alpha: float = 2.0, beta: float = 1.0, stabilizer: float = 1e-6) -> None:
        if alpha < 0 or beta < 0:
            raise ValueError(f"alpha and beta must be >= 0, got alpha={alpha}, beta={beta}")
        if abs((alpha - beta) - 1.0) > 1e-12:
            raise ValueError(
                f"alpha - beta must equal 1 for relevance to be conserved, got alpha={alpha}, beta={beta}; "
                f"try alpha={beta + 1:g}, beta={beta:g}"
            )
        self.alpha = float(alpha)
        self.beta = float(beta)
        self.stabilizer = float(stabilizer)

    def uses_output(self, layer: Affine, positive: bool) -> bool:
        return layer.input_nonneg  # n = z − p needs z; a signed input takes the stacked pass below

    def propagate(self, layer, x, z, relevance, bias, bounds=None, positive=False, reuse=False):  # type: ignore[override]
        a, b, eps = self.alpha, self.beta, self.stabilizer
        nonneg = _nonneg(x, layer)
        if nonneg and z is not None:  # z = p + n: one positive-weight pass gives both
            p = layer.forward(x, layer.weight_pos, None if bias is None else bias.clamp(min=0))
            n = z.sub_(p) if reuse else torch.sub(z, p)
        else:  # both sums computed directly, in one pass with stacked weights
            p, n = _contributions(layer, x, bias, nonneg)
        s_p, stab_p, drop_p = share(relevance, p, eps, reuse=True)  # p and n are ours: they become s
        s_n, stab_n, drop_n = share(relevance, n, eps, reuse=True)
        if bias is None:
            bias_part = _zeros(relevance.shape[0], relevance.device)
        else:
            bias_part = a * _bias_part(layer, s_p, bias.clamp(min=0)) - b * _bias_part(layer, s_n, bias.clamp(max=0))
        wp = layer.weight_pos
        if nonneg:  # x (α W⁺ᵀs_p − β W⁻ᵀs_n) = x (W⁺ᵀ(α s_p + β s_n) − β Wᵀs_n), with W⁻ = W − W⁺
            r_in = layer.transpose(s_p.mul_(a).add_(s_n, alpha=b), x.shape, wp)
            del s_p
            r_in.sub_(layer.transpose(s_n, x.shape).mul_(b)).mul_(x)
        else:
            mixed = layer.transpose(torch.add(s_p, s_n, alpha=b / a).mul_(a), x.shape, wp)
            r_in = x.clamp(min=0) * (mixed - b * layer.transpose(s_n, x.shape)) + x.clamp(max=0) * (
                a * layer.transpose(s_p, x.shape) - mixed
            )
        return r_in, Absorbed(bias_part, a * stab_p - b * stab_n, a * drop_p - b * drop_n)


class Gamma(AffineRule):
    """Generalised γ-rule (Montavon et al. 2019; Andéol et al. 2021), as in Zennit ≥ 0.5.

    Positive outputs are explained with ``W + γW⁺`` for positive inputs (``W + γW⁻`` for
    negative ones), negative outputs with the roles swapped; outputs exactly zero pass nothing.
    """

    name = "gamma"

    def __init__(self, gamma: float = 0.25, stabilizer: float = 1e-6) -> None:
        if gamma < 0:
            raise ValueError(f"gamma must be >= 0, got {gamma}")
        self.gamma = float(gamma)
        self.stabilizer = float(stabilizer)

    def uses_output(self, layer: Affine, positive: bool) -> bool:
        return not positive

    def propagate(self, layer, x, z, relevance, bias, bounds=None, positive=False, reuse=False):  # type: ignore[override]
        g, eps = self.gamma, self.stabilizer
        nonneg = _nonneg(x, layer)
        if positive:
            return self._positive_outputs(layer, x, relevance, bias, nonneg)
        p = _positive_part(layer, x, bias, nonneg)
        # one denominator for both cases, selected by sign(z) with arithmetic (no torch.where, slow on
        # CPU): z + γp where z > 0, z + γ(z − p) = z + γn where z < 0; q = 2p or 2(z − p) accordingly
        sgn = torch.sign(z)
        q = torch.addcmul(z, sgn, torch.sub(p, z, alpha=0.5).mul_(2))  # z + sign(z)·(2p − z)
        den = torch.add(z, q, alpha=g / 2)
        live = relevance
        if bool((z == 0).any()):  # outputs exactly zero pass nothing
            live = relevance * sgn.abs()
        s, stab, dropped = share(live, den, eps)
        if live is not relevance:
            dropped = dropped + psum(relevance) - psum(live)
        a1 = s * sgn.mul(-g / 2).add_(1 + g / 2)  # s⁺ + (1+γ)s⁻
        a2 = s * sgn  # s⁺ − s⁻
        diff = layer.transpose(a2, x.shape, layer.weight_pos)
        if nonneg:
            r_in = layer.transpose(a1, x.shape).add_(diff, alpha=g).mul_(x)
        else:
            a3 = s * sgn.mul(g / 2).add_(1 + g / 2)  # (1+γ)s⁺ + s⁻
            r_in = layer.transpose(a1, x.shape).add_(diff, alpha=g).mul_(x.clamp(min=0))
            r_in += layer.transpose(a3, x.shape).sub_(diff, alpha=g).mul_(x.clamp(max=0))
        if bias is None:
            bias_part = _zeros(z.shape[0], z.device)
        else:
            total, signed = _channel_sums(layer, s), _channel_sums(layer, a2)
            s_pos, s_neg = (total + signed) / 2, (total - signed) / 2
            b = bias.double()
            bias_part = (s_pos * (b + g * b.clamp(min=0)) + s_neg * (b + g * b.clamp(max=0))).sum(1)
        return r_in, Absorbed(bias_part, stab, dropped)

    def _positive_outputs(
        self, layer: Affine, x: Tensor, relevance: Tensor, bias: Tensor | None, nonneg: bool
    ) -> tuple[Tensor, Absorbed]:
        """Relevance only where ``z > 0``: the weights ``W + γW⁺`` (for ``x ≥ 0``) and ``W + γW⁻``
        (for ``x < 0``) do it all, and ``z`` itself is never read.

        There ``z + γp = (W + γW⁺)x⁺ + (W + γW⁻)x⁻ + b + γb⁺``, and every input gets
        ``x⁺_i ((W + γW⁺)ᵀ s)_i + x⁻_i ((W + γW⁻)ᵀ s)_i``: with a non-negative input (after a
        ReLU) one forward and one transposed pass.
        """
        g = self.gamma
        up = layer.cached(("gamma+", g), lambda: layer.weight + g * layer.weight_pos)
        b = None if bias is None else bias + g * bias.clamp(min=0)
        if nonneg:
            s, stab, dropped = share(relevance, layer.forward(x, up, b), self.stabilizer, reuse=True)
            return layer.transpose(s, x.shape, up).mul_(x), Absorbed(_bias_part(layer, s, b), stab, dropped)
        down = layer.cached(("gamma-", g), lambda: layer.weight + g * layer.weight_neg)
        xp, xn = x.clamp(min=0), x.clamp(max=0)
        den = layer.forward(xp, up, b).add_(layer.forward(xn, down))
        s, stab, dropped = share(relevance, den, self.stabilizer, reuse=True)
        r_in = layer.transpose(s, x.shape, up).mul_(xp).add_(layer.transpose(s, x.shape, down).mul_(xn))
        return r_in, Absorbed(_bias_part(layer, s, b), stab, dropped)


class ZBox(AffineRule):
    """z^B-rule (Montavon et al. 2017) for bounded inputs ``low ≤ x ≤ high`` (first layer).

    ``z = xW − lW⁺ − hW⁻`` (biases cancel); ``R_i = x_i c_i − l_i c⁺_i − h_i c⁻_i``.
    """

    name = "zbox"
    zero_at_zero_input = False  # R_i = x_i c_i − l_i c⁺_i − h_i c⁻_i

    def __init__(self, low: Any = None, high: Any = None, stabilizer: float = 1e-6) -> None:
        self.low = low
        self.high = high
        self.stabilizer = float(stabilizer)

    def params(self) -> dict[str, Any]:
        def show(v: Any) -> Any:
            if isinstance(v, Tensor):
                return [round(float(t), 6) for t in v.flatten()]
            return v

        return {"low": show(self.low), "high": show(self.high), "stabilizer": self.stabilizer}

    def propagate(self, layer, x, z, relevance, bias, bounds=None, positive=False, reuse=False):  # type: ignore[override]
        if bounds is None:
            raise ValueError("the zbox rule needs input bounds (options low= and high=)")
        low, high = bounds
        wp = layer.weight_pos
        key = ("zbox", x.shape[1:], value_key(low), value_key(high))  # by value: addresses get reused

        def offset() -> Tensor:
            wn = layer.weight_neg
            lo = low.expand(low.shape[0], *x.shape[1:])
            hi = high.expand(high.shape[0], *x.shape[1:])
            return layer.forward(lo, wp) + layer.forward(hi, wn)

        xw = z if bias is None else z - layer.bias_view(bias, z.ndim)
        zb = xw - (layer.cached(key, offset) if low.shape[0] == 1 and high.shape[0] == 1 else offset())
        s, stab, dropped = share(relevance, zb, self.stabilizer)
        r_in = (x - high) * layer.transpose(s, x.shape) + (high - low) * layer.transpose(s, x.shape, wp)
        return r_in, Absorbed(_zeros(z.shape[0], z.device), stab, dropped)


class _UnitInput(AffineRule):
    """Rules that spread relevance with a modified weight and unit inputs (flat, w²)."""

    uses_input = False
    needs_output = False
    zero_at_zero_input = False

    def __init__(self, stabilizer: float = 1e-6) -> None:
        self.stabilizer = float(stabilizer)

    @abstractmethod
    def _weights(self, layer: Affine, bias: Tensor | None) -> tuple[Tensor, Tensor | None]:
        """The modified weight and bias."""

    def propagate(self, layer, x, z, relevance, bias, bounds=None, positive=False, reuse=False):  # type: ignore[override]
        w, b = self._weights(layer, bias)
        key = (self.name, x.shape[1:], b is not None)
        zu = layer.cached(key, lambda: layer.forward(x.new_ones(1, *x.shape[1:]), w, b))
        s, stab, dropped = share(relevance, zu.expand_as(relevance), self.stabilizer)
        r_in = layer.transpose(s, x.shape, w).expand(x.shape)
        return r_in, Absorbed(_bias_part(layer, s, b), stab, dropped)


class Flat(_UnitInput):
    """Flat rule (Lapuschkin et al. 2019): unit weights and inputs, no bias: a uniform spread."""

    name = "flat"

    def _weights(self, layer, bias):  # type: ignore[override]
        return layer.cached("ones", lambda: torch.ones_like(layer.weight)), None


class WSquare(_UnitInput):
    """w²-rule (Montavon et al. 2017): weights ``w²`` (bias ``b²``), unit inputs."""

    name = "wsquare"

    def _weights(self, layer, bias):  # type: ignore[override]
        w2 = layer.cached("w2", lambda: layer.weight**2)
        return w2, None if bias is None else bias**2


#: rules a composite may assign to a convolution or dense layer, by the name configs use
AFFINE_RULES: dict[str, type[AffineRule]] = {
    cls.name: cls for cls in (LRP0, Epsilon, Gamma, ZPlus, AlphaBeta, ZBox, Flat, WSquare)
}


def rule_params(name: str) -> list[str]:
    """The parameters rule ``name`` accepts (from its constructor), in order."""
    return [p for p in inspect.signature(AFFINE_RULES[name].__init__).parameters if p != "self"]


def make_rule(name: str, **params: Any) -> AffineRule:
    """Instantiate an affine rule by its registry name, with a helpful error on bad input."""
    cls = AFFINE_RULES.get(name)
    if cls is None:
        raise ValueError(f"unknown rule {name!r}; choose one of: {', '.join(sorted(AFFINE_RULES))}")
    try:
        return cls(**params)
    except TypeError as exc:
        allowed = rule_params(name)
        raise ValueError(
            f"rule {name!r} got parameters {sorted(params)}; it accepts {allowed or 'no parameters'}"
        ) from exc
