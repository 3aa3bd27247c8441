"""LRP rules, each a small class named after the literature.

An affine rule turns the relevance ``R`` at a layer's output into relevance at its input and
says, per image, how much it absorbed and by what (bias, stabiliser, dropped). The general
form (Bach et al. 2015; Montavon et al. 2019) with a weight transform ρ is::

    z'_k = Σ_i a_i ρ(w_ik) + ρ(b_k)      s_k = R_k / stab(z'_k)      R_i = a_i Σ_k ρ(w_ik) s_k

Each rule below computes exactly what Zennit 0.5 computes for the same name, but with the
fewest passes: the forward output ``z`` is reused, ``W⁻ = W - W⁺`` is never given its own pass
when the input is non-negative (except where that would cancel, see :func:`_few_inputs`), and
constant terms (flat, w², box bounds) are cached.

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
    """Relevance a layer absorbed, per image (float64, shape ``(N,)``).

    ``distributed`` is not absorbed: it is the bias share that ``bias="distribute"`` handed on to
    the inputs (already in the input relevance), kept for the ledger's information.
    """

    bias: Tensor
    stabilizer: Tensor
    dropped: Tensor
    distributed: Tensor | None = None


#: what a rule does with the bias term's share of the relevance (``bias=`` of ε, z⁺, γ, αβ)
BIAS_TREATMENTS: dict[str, str] = {
    "absorb": "the bias takes its share s_k·b_k of R_k, booked in the ledger as absorbed by the bias",
    "distribute": "the bias share goes on to the inputs of output k in proportion to |x_i w_ik| "
    "(Bach et al. 2015): nothing is booked as bias, so ΣR_pixels = f(x) up to the stabilisers",
    "ignore": "the rule's denominators leave the bias out (z'_k = z_k − b_k, Zennit's zero_params): "
    "nothing is booked as bias, but z'_k can be near zero where z_k is not, so relevance can blow up",
}


def psum(t: Tensor) -> Tensor:
    """Per-image sum (accumulated in the tensor's dtype, returned as float64)."""
    return t.reshape(t.shape[0], -1).sum(1).double()


def share(r: Tensor, z: Tensor, epsilon: float | Tensor, *, reuse: bool = False) -> tuple[Tensor, Tensor, Tensor]:
    """``s = r / (z + ε·sign(z))`` with what the stabiliser absorbs, ``Σ s·ε·sign(z)``, and what is
    dropped where the denominator is exactly zero (ε = 0 only), per image. ``epsilon`` is one
    number or one per image (shape ``(N,)``).

    ``reuse``: ``z`` is the caller's own temporary (not a kept activation) and becomes ``s``, so
    that no third tensor of this size is alive at once.
    """
    n = r.shape[0]
    if isinstance(epsilon, Tensor):
        eps = epsilon.to(z.dtype).view(-1, *([1] * (z.ndim - 1)))
        shift = torch.copysign(eps.expand_as(z), z)
        s = z.add_(shift) if reuse and z.shape == r.shape else torch.add(z, shift)
        torch.div(r, s, out=s)
        return s, psum(shift.mul_(s)), _zeros(n, r.device)
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


def _ones(layer: Affine) -> Tensor:
    return layer.cached("ones", lambda: torch.ones_like(layer.weight))


def _unit_input(layer: Affine, shape: torch.Size) -> Tensor:
    return torch.ones((1, *shape[1:]), dtype=layer.weight.dtype, device=layer.weight.device)


def inverse_coverage(layer: Affine, shape: torch.Size) -> Tensor:
    """``1/c_i``, ``c_i`` the number of (output position, output channel) pairs input ``i`` feeds.

    A 3×3 stride-2 convolution feeds an input 1, 2 or 4 windows by its position: a rule whose
    contributions all have one sign (flat, w², z⁺, z^B) then gives inputs 1×, 2× or 4× the
    relevance of their neighbours, the dot grid of strided first layers. Dividing every
    contribution by ``c_i`` removes it. Inputs that feed nothing get 0. Shape ``(1, *input)``.
    """

    def make() -> Tensor:
        ones, unit = _ones(layer), _unit_input(layer, shape)
        c = layer.transpose(torch.ones_like(layer.forward(unit, ones)), unit.shape, ones)
        return torch.where(c > 0, 1.0 / c.clamp(min=1e-30), torch.zeros_like(c))

    return layer.cached(("1/c", tuple(shape[1:])), make)


def spread_bias(layer: Affine, x: Tensor, t: Tensor) -> Tensor:
    """Input relevance that hands each output's bias share ``t_k`` to its inputs in proportion to
    ``|x_i w_ik|`` (uniformly over its real inputs where all those are zero): sums to ``Σ t``."""
    aw = layer.cached("|w|", lambda: layer.weight.abs())
    ax = x.abs()
    total = layer.forward(ax, aw)
    live = total > 0
    q = torch.where(live, t / torch.where(live, total, torch.ones_like(total)), torch.zeros_like(t))
    out = layer.transpose(q, x.shape, aw).mul_(ax)
    rest = torch.where(live, torch.zeros_like(t), t)
    if bool((rest != 0).any()):
        ones = _ones(layer)
        fan = layer.cached(("fan", tuple(x.shape[1:])), lambda: layer.forward(_unit_input(layer, x.shape), ones))
        out += layer.transpose(rest / fan, x.shape, ones)
    return out


def settle_bias(
    layer: Affine, x: Tensor, r_in: Tensor, terms: list[tuple[float, Tensor, Tensor]], treatment: str
) -> tuple[Tensor, Tensor, Tensor | None]:
    """Apply a bias treatment to the bias shares ``Σ c·s_k·b_k`` of ``terms`` (``(c, s, b)``).

    ``absorb``: returns ``(r_in, booked bias, None)``; ``distribute``: the shares are added to
    ``r_in`` (see :func:`spread_bias`) and returned as ``distributed``, nothing is booked.
    """
    n = x.shape[0]
    if treatment != "distribute" or not terms:
        return r_in, sum((c * _bias_part(layer, s, b) for c, s, b in terms), _zeros(n, x.device)), None
    t = sum(s * layer.bias_view(b, s.ndim).mul(c) for c, s, b in terms)
    return r_in.add_(spread_bias(layer, x, t)), _zeros(n, x.device), psum(t)


def stabilizer_spec(value: float | str) -> tuple[float, bool]:
    """``(ε, relative)`` from ``1e-6`` or ``"0.25std"`` (ε = 0.25 · std of the layer's pre-activations)."""
    if isinstance(value, str):
        text = value.strip().lower()
        if text.endswith("std"):
            try:
                factor = float(text[:-3] or "1")
            except ValueError:
                factor = -1.0
            if factor >= 0:
                return factor, True
        raise ValueError(f"epsilon must be a number >= 0 or a multiple of the std such as '0.25std', got {value!r}")
    if value < 0:
        raise ValueError(f"epsilon must be >= 0, got {value}")
    return float(value), False


def _check_treatment(bias: str) -> str:
    if bias not in BIAS_TREATMENTS:
        raise ValueError(f"bias must be one of {', '.join(BIAS_TREATMENTS)}, got {bias!r}")
    return bias


class Rule(ABC):
    """Base of all rules: a registry name and its parameters."""

    name: ClassVar[str]
    #: rules that do not multiply by the layer input (flat, w²) ignore its values
    uses_input: ClassVar[bool] = True

    def params(self) -> dict[str, Any]:
        """The rule's parameters, for reports (``bias`` and ``coverage`` only when not the default)."""
        return {
            k: v
            for k, v in vars(self).items()
            if not k.startswith("_") and not (k in _QUIET_DEFAULTS and v == _QUIET_DEFAULTS[k])
        }

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


#: parameters not shown in descriptions while they have these values
_QUIET_DEFAULTS: dict[str, Any] = {"bias": "absorb", "coverage": False}


class AffineRule(Rule):
    """A rule for convolutions and dense layers.

    ``coverage``: divide every contribution by the input's coverage (see :func:`inverse_coverage`),
    for strided first layers; the rule is then applied to the input ``x/c`` (and bounds ``l/c``,
    ``h/c``), whose relevance is the relevance of ``x``.
    """

    coverage: bool = False

    #: whether ``propagate`` reads the layer output ``z`` (the engine passes ``None`` otherwise)
    needs_output: ClassVar[bool] = True
    #: whether an input that is exactly zero always gets zero relevance (``R_i = x_i · c_i``)
    zero_at_zero_input: ClassVar[bool] = True

    def uses_output(self, layer: Affine, positive: bool) -> bool:
        """Whether ``propagate`` reads ``z`` for ``layer``; ``positive``: see :meth:`propagate`."""
        return self.needs_output and not self.coverage

    def needs_true_output(self) -> bool:
        """Whether the rule must get ``z`` itself, never ``relu(z)`` (statistics over all of ``z``)."""
        return False

    def apply(
        self,
        layer: Affine,
        x: Tensor,
        z: Tensor | None,
        relevance: Tensor,
        bias: Tensor | None,
        bounds: tuple[Tensor, Tensor] | None = None,
        positive: bool = False,
        reuse: bool = False,
    ) -> tuple[Tensor, Absorbed]:
        """:meth:`propagate`, on the coverage-scaled input when ``coverage`` is set."""
        if not self.coverage:
            return self.propagate(layer, x, z, relevance, bias, bounds, positive, reuse)  # type: ignore[arg-type]
        inv_c = inverse_coverage(layer, x.shape)
        xs = x * inv_c
        scaled = None if bounds is None else (bounds[0] * inv_c, bounds[1] * inv_c)
        zs = layer.forward(xs, None, bias) if self.needs_output or self.needs_true_output() else None
        return self.propagate(layer, xs, zs, relevance, bias, scaled, False, True)  # type: ignore[arg-type]

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


def _few_inputs(layer: Affine) -> bool:
    """Layers whose outputs each sum at most :data:`FEW_INPUTS` inputs: depthwise convolutions
    (9 or 25), narrow 1×1 convolutions, per-channel scales (1).

    After a ReLU, such an output's negative contributions are often all zero (every input under
    a negative weight is off), so that ``n = b⁻`` exactly. Computed as ``z − p`` it is the float32
    rounding of ``p`` instead, which the stabiliser (1e-6) turns into an arbitrary ``s_n``; and
    ``s_n = R/ε`` itself, when exact, makes the shortcut ``W⁺ᵀ(α s_p + β s_n) − β Wᵀ s_n`` a
    difference of huge terms. Either leaves the ledger off by up to 1e-3 of f(x) in float32
    (EfficientNet-Lite0, SqueezeNet, MobileNetV3 under α2β1), which precision "auto" then redoes
    in float64. αβ computes ``p`` and ``n`` of these layers directly and sends ``s_p`` and ``s_n``
    back through ``W⁺`` and ``W⁻`` each on its own: one more pass, cheap on such layers."""
    return layer.kind == "scale" or layer.weight[0].numel() <= FEW_INPUTS


#: see :func:`_few_inputs`; above it, the cancellation needs far more inputs all off at once
FEW_INPUTS = 64


def _nonneg(x: Tensor, layer: Affine) -> bool:
    """Whether the input has no negative entries (known from the graph, else checked)."""
    return layer.input_nonneg or not bool((x < 0).any())


class Epsilon(AffineRule):
    """ε-rule (Bach et al. 2015): ``s = R / (z + ε·sign(z))``, ``R_i = x_i (Wᵀ s)_i``.

    ``epsilon`` is a number or a multiple of the standard deviation of the layer's
    pre-activations on each image, ``"0.25std"`` (Montavon et al. 2019).
    """

    name = "epsilon"

    def __init__(self, epsilon: float | str = 1e-6, bias: str = "absorb", coverage: bool = False) -> None:
        self._eps, self._relative = stabilizer_spec(epsilon)
        self.epsilon: float | str = f"{self._eps:g}std" if self._relative else self._eps
        self.bias = _check_treatment(bias)
        self.coverage = bool(coverage)

    def needs_true_output(self) -> bool:
        return self._relative

    def stabilizer_for(self, z: Tensor) -> float | Tensor:
        """ε for the pre-activations ``z``: the number, or per image ``factor · std(z)``."""
        if not self._relative:
            return self._eps
        return z.reshape(z.shape[0], -1).std(1).double().mul_(self._eps)

    def propagate(self, layer, x, z, relevance, bias, bounds=None, positive=False, reuse=False):  # type: ignore[override]
        eps = self.stabilizer_for(z)
        if self.bias == "ignore" and bias is not None:
            z = z.sub_(layer.bias_view(bias, z.ndim)) if reuse else z - layer.bias_view(bias, z.ndim)
            bias = None
        s, stab, dropped = share(relevance, z, eps, reuse=reuse)
        r_in = layer.transpose(s, x.shape).mul_(x)
        terms = [] if bias is None else [(1.0, s, bias)]
        r_in, booked, spread = settle_bias(layer, x, r_in, terms, self.bias)
        return r_in, Absorbed(booked, stab, dropped, spread)


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

    def __init__(self, stabilizer: float = 1e-6, bias: str = "absorb", coverage: bool = False) -> None:
        self.stabilizer = float(stabilizer)
        self.bias = _check_treatment(bias)
        self.coverage = bool(coverage)

    def propagate(self, layer, x, z, relevance, bias, bounds=None, positive=False, reuse=False):  # type: ignore[override]
        nonneg = _nonneg(x, layer)
        if self.bias == "ignore":
            bias = None
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
        terms = [] if bias is None else [(1.0, s, bias.clamp(min=0))]
        r_in, booked, spread = settle_bias(layer, x, r_in, terms, self.bias)
        return r_in, Absorbed(booked, stab, dropped, spread)


class AlphaBeta(AffineRule):
    """αβ-rule (Bach et al. 2015): ``α·(positive share) − β·(negative share)``, α − β = 1."""

    name = "alpha_beta"

    def __init__(
        self, alpha: float = 2.0, beta: float = 1.0, stabilizer: float = 1e-6, bias: str = "absorb", coverage: bool = False
    ) -> None:
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
        self.bias = _check_treatment(bias)
        self.coverage = bool(coverage)

    def uses_output(self, layer: Affine, positive: bool) -> bool:
        # n = z − p needs z; a signed input, or a layer where z − p cancels, takes the stacked pass below
        return layer.input_nonneg and not _few_inputs(layer)

    def propagate(self, layer, x, z, relevance, bias, bounds=None, positive=False, reuse=False):  # type: ignore[override]
        a, b, eps = self.alpha, self.beta, self.stabilizer
        nonneg = _nonneg(x, layer)
        direct = _few_inputs(layer)
        if self.bias == "ignore" and bias is not None:
            if z is not None:
                z = z.sub_(layer.bias_view(bias, z.ndim)) if reuse else z - layer.bias_view(bias, z.ndim)
                reuse = True
            bias = None
        if nonneg and z is not None and not direct:  # z = p + n: one positive-weight pass gives both
            p = layer.forward(x, layer.weight_pos, None if bias is None else bias.clamp(min=0))
            n = z.sub_(p) if reuse else torch.sub(z, p)
        else:  # both sums computed directly, in one pass with stacked weights
            p, n = _contributions(layer, x, bias, nonneg)
        s_p, stab_p, drop_p = share(relevance, p, eps, reuse=True)  # p and n are ours: they become s
        s_n, stab_n, drop_n = share(relevance, n, eps, reuse=True)
        terms: list[tuple[float, Tensor, Tensor]] = []
        if bias is None:
            booked = _zeros(relevance.shape[0], relevance.device)
        elif self.bias == "distribute":  # s_p is overwritten below, s_n is not
            terms = [(a, s_p.clone(), bias.clamp(min=0)), (-b, s_n, bias.clamp(max=0))]
        else:
            booked = a * _bias_part(layer, s_p, bias.clamp(min=0)) - b * _bias_part(layer, s_n, bias.clamp(max=0))
        wp = layer.weight_pos
        if direct:  # each weight part on its own: W⁺ᵀ and W⁻ᵀ, no difference of large terms
            wn = layer.weight_neg
            r_in = layer.transpose(s_p, x.shape, wp).mul_(a).sub_(layer.transpose(s_n, x.shape, wn).mul_(b))
            if nonneg:
                r_in.mul_(x)
            else:
                back = layer.transpose(s_p, x.shape, wn).mul_(a).sub_(layer.transpose(s_n, x.shape, wp).mul_(b))
                r_in = r_in.mul_(x.clamp(min=0)).add_(back.mul_(x.clamp(max=0)))
        elif nonneg:  # x (α W⁺ᵀs_p − β W⁻ᵀs_n) = x (W⁺ᵀ(α s_p + β s_n) − β Wᵀs_n), with W⁻ = W − W⁺
            r_in = layer.transpose(s_p.mul_(a).add_(s_n, alpha=b), x.shape, wp)
            del s_p
            r_in.sub_(layer.transpose(s_n, x.shape).mul_(b)).mul_(x)
        else:
            mixed = layer.transpose(torch.add(s_p, s_n, alpha=b / a).mul_(a), x.shape, wp)
            r_in = x.clamp(min=0) * (mixed - b * layer.transpose(s_n, x.shape)) + x.clamp(max=0) * (
                a * layer.transpose(s_p, x.shape) - mixed
            )
        spread = None
        if terms:
            r_in, booked, spread = settle_bias(layer, x, r_in, terms, "distribute")
        return r_in, Absorbed(booked, a * stab_p - b * stab_n, a * drop_p - b * drop_n, spread)


class Gamma(AffineRule):
    """Generalised γ-rule (Montavon et al. 2019; Andéol et al. 2021), as in Zennit ≥ 0.5.

    Positive outputs are explained with ``W + γW⁺`` for positive inputs (``W + γW⁻`` for
    negative ones), negative outputs with the roles swapped; outputs exactly zero pass nothing.
    """

    name = "gamma"

    def __init__(
        self, gamma: float = 0.25, stabilizer: float = 1e-6, bias: str = "absorb", coverage: bool = False
    ) -> None:
        if gamma < 0:
            raise ValueError(f"gamma must be >= 0, got {gamma}")
        self.gamma = float(gamma)
        self.stabilizer = float(stabilizer)
        self.bias = _check_treatment(bias)
        self.coverage = bool(coverage)

    def uses_output(self, layer: Affine, positive: bool) -> bool:
        # without the bias, z' = z − b may be negative where z > 0: the shortcut below does not hold
        return (not positive or self.bias == "ignore") and not self.coverage

    def propagate(self, layer, x, z, relevance, bias, bounds=None, positive=False, reuse=False):  # type: ignore[override]
        g, eps = self.gamma, self.stabilizer
        nonneg = _nonneg(x, layer)
        if self.bias == "ignore" and bias is not None:
            z = z - layer.bias_view(bias, z.ndim)
            bias = None
        elif positive:
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
        spread = None
        if bias is None:
            bias_part = _zeros(z.shape[0], z.device)
        elif self.bias == "distribute":  # s⁺ = (s + a2)/2 and s⁻ = (s − a2)/2
            up, down = bias + g * bias.clamp(min=0), bias + g * bias.clamp(max=0)
            terms = [(0.5, s + a2, up), (0.5, s - a2, down)]
            r_in, bias_part, spread = settle_bias(layer, x, r_in, terms, "distribute")
        else:
            total, signed = _channel_sums(layer, s), _channel_sums(layer, a2)
            s_pos, s_neg = (total + signed) / 2, (total - signed) / 2
            b = bias.double()
            bias_part = (s_pos * (b + g * b.clamp(min=0)) + s_neg * (b + g * b.clamp(max=0))).sum(1)
        return r_in, Absorbed(bias_part, stab, dropped, spread)

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
            r_in = layer.transpose(s, x.shape, up).mul_(x)
        else:
            down = layer.cached(("gamma-", g), lambda: layer.weight + g * layer.weight_neg)
            xp, xn = x.clamp(min=0), x.clamp(max=0)
            den = layer.forward(xp, up, b).add_(layer.forward(xn, down))
            s, stab, dropped = share(relevance, den, self.stabilizer, reuse=True)
            r_in = layer.transpose(s, x.shape, up).mul_(xp).add_(layer.transpose(s, x.shape, down).mul_(xn))
        r_in, booked, spread = settle_bias(layer, x, r_in, [] if b is None else [(1.0, s, b)], self.bias)
        return r_in, Absorbed(booked, stab, dropped, spread)


class ZBox(AffineRule):
    """z^B-rule (Montavon et al. 2017) for bounded inputs ``low ≤ x ≤ high`` (first layer).

    ``z = xW − lW⁺ − hW⁻`` (biases cancel); ``R_i = x_i c_i − l_i c⁺_i − h_i c⁻_i``.
    """

    name = "zbox"
    zero_at_zero_input = False  # R_i = x_i c_i − l_i c⁺_i − h_i c⁻_i

    def __init__(self, low: Any = None, high: Any = None, stabilizer: float = 1e-6, coverage: bool = False) -> None:
        self.low = low
        self.high = high
        self.stabilizer = float(stabilizer)
        self.coverage = bool(coverage)

    def params(self) -> dict[str, Any]:
        def show(v: Any) -> Any:
            if isinstance(v, Tensor):
                return [round(float(t), 6) for t in v.flatten()]
            return v

        out = {"low": show(self.low), "high": show(self.high), "stabilizer": self.stabilizer}
        return {**out, "coverage": True} if self.coverage else out

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

    def __init__(self, stabilizer: float = 1e-6, coverage: bool = False) -> None:
        self.stabilizer = float(stabilizer)
        self.coverage = bool(coverage)

    @abstractmethod
    def _weights(self, layer: Affine, bias: Tensor | None) -> tuple[Tensor, Tensor | None]:
        """The modified weight and bias."""

    def apply(self, layer, x, z, relevance, bias, bounds=None, positive=False, reuse=False):  # type: ignore[override]
        return self.propagate(layer, x, z, relevance, bias, bounds, positive, reuse)

    def propagate(self, layer, x, z, relevance, bias, bounds=None, positive=False, reuse=False):  # type: ignore[override]
        w, b = self._weights(layer, bias)
        # unit inputs, or 1/c_i with coverage (the input the rule sees is then x/c with x = 1)
        unit = inverse_coverage(layer, x.shape) if self.coverage else x.new_ones(1, *x.shape[1:])
        key = (self.name, x.shape[1:], b is not None, self.coverage)
        zu = layer.cached(key, lambda: layer.forward(unit, w, b))
        s, stab, dropped = share(relevance, zu.expand_as(relevance), self.stabilizer)
        r_in = layer.transpose(s, x.shape, w)
        r_in = r_in.mul_(unit) if self.coverage else r_in.expand(x.shape)
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
