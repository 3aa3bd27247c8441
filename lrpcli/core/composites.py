"""Composites: which rule each convolution and dense layer gets.

A composite is an ordered list of selectors (``first``, ``last``, a layer name glob, a layer
type) with a rule each. The named presets reproduce Zennit's layer assignment: the first
layer (first convolution, or first convolution-or-dense layer for the ``*_flat`` presets),
convolutions, and dense layers. Custom composites use the same selectors, which is the form
the YAML config takes::

    {"preset": "epsilon_plus", "first": "flat", "features.2*": {"rule": "gamma", "gamma": 0.5}}
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from .rules import AFFINE_RULES, AffineRule, AlphaBeta, Epsilon, Flat, Gamma, ZBox, ZPlus, make_rule, rule_params

#: selectors that name a layer type
TYPE_SELECTORS = ("conv", "linear")


@dataclass(frozen=True)
class LayerInfo:
    """What a composite may look at to choose a rule."""

    index: int  # position among affine layers, in execution order
    name: str  # module path, e.g. "features.0"
    kind: str  # "conv" or "linear"
    type_name: str  # module class, e.g. "Conv2d"
    is_last: bool


@dataclass(frozen=True)
class Assignment:
    """A rule and the reason it was chosen."""

    rule: AffineRule
    reason: str


@dataclass
class Composite:
    """Ordered selectors → rules; the first matching selector wins (``first``/``last`` first)."""

    name: str
    first: AffineRule | None = None
    first_kinds: tuple[str, ...] = ("conv", "linear")
    last: AffineRule | None = None
    by_name: list[tuple[str, AffineRule]] = field(default_factory=list)
    by_type: dict[str, AffineRule] = field(default_factory=dict)
    #: stabiliser of the sum rule used for additions and average pooling
    norm_stabilizer: float = 1e-6

    def assign(self, layers: list[LayerInfo]) -> list[Assignment]:
        """One assignment per layer, in the order given."""
        first_index = next((lay.index for lay in layers if lay.kind in self.first_kinds), None)
        out: list[Assignment] = []
        for lay in layers:
            if self.first is not None and lay.index == first_index:
                out.append(Assignment(self.first, "first layer"))
                continue
            if self.last is not None and lay.is_last:
                out.append(Assignment(self.last, "last layer"))
                continue
            named = next(((g, r) for g, r in self.by_name if fnmatch.fnmatchcase(lay.name, g)), None)
            if named is not None:
                out.append(Assignment(named[1], f"name matches {named[0]!r}"))
                continue
            rule = self.by_type.get(lay.type_name) or self.by_type.get(lay.kind)
            if rule is None:
                raise ValueError(
                    f"composite {self.name!r} assigns no rule to layer {lay.name!r} ({lay.type_name}); "
                    f"add a {lay.kind!r} entry or a name pattern for it"
                )
            key = lay.type_name if lay.type_name in self.by_type else lay.kind
            out.append(Assignment(rule, f"type {key}"))
        return out

    def describe(self) -> dict[str, str]:
        """Selector → rule description, for `lrp composites` and reports."""
        d: dict[str, str] = {}
        if self.first is not None:
            d[f"first ({'/'.join(self.first_kinds)})"] = self.first.describe()
        if self.last is not None:
            d["last"] = self.last.describe()
        for g, r in self.by_name:
            d[g] = r.describe()
        for t, r in self.by_type.items():
            d[t] = r.describe()
        return d


@dataclass(frozen=True)
class Options:
    """Rule parameters a caller may set for the presets (defaults are Zennit's, but ``coverage``).

    ``epsilon``: a number or a multiple of each layer's pre-activation std (``"0.25std"``);
    ``bias``: the bias treatment of ε, z⁺, γ and αβ (:data:`lrpcli.core.rules.BIAS_TREATMENTS`);
    ``coverage``: the first-layer rule of a preset divides contributions by coverage, which
    removes the dot grid of strided first layers (``False``: exactly Zennit's rules). It applies
    where the first rule's contributions share one sign (flat, z⁺) or mostly do (αβ); not to z^B,
    whose map it makes more gridded (period-2 energy 0.007 → 0.022 on EfficientNet-Lite0).
    """

    epsilon: float | str = 1e-6
    stabilizer: float = 1e-6
    gamma: float = 0.25
    low: Any = None
    high: Any = None
    bias: str = "absorb"
    coverage: bool = True


def _dense(o: Options) -> AffineRule:
    return Epsilon(o.epsilon, bias=o.bias)


@dataclass(frozen=True)
class Preset:
    """A named composite: what it assigns, in words, and how to build it from the options."""

    description: str
    build: Callable[[Options], Composite]


PRESETS: dict[str, Preset] = {
    "epsilon": Preset(
        "ε for every convolution and dense layer",
        lambda o: Composite("epsilon", by_type={"conv": Epsilon(o.epsilon, bias=o.bias), "linear": _dense(o)}),
    ),
    "epsilon_plus": Preset(
        "z⁺ for convolutions, ε for dense layers",
        lambda o: Composite(
            "epsilon_plus",
            first=ZPlus(o.stabilizer, o.bias, coverage=True) if o.coverage else None,
            first_kinds=("conv",),
            by_type={"conv": ZPlus(o.stabilizer, o.bias), "linear": _dense(o)},
        ),
    ),
    "epsilon_plus_flat": Preset(
        "flat for the first layer, z⁺ for convolutions, ε for dense layers",
        lambda o: Composite(
            "epsilon_plus_flat",
            first=Flat(o.stabilizer, o.coverage),
            by_type={"conv": ZPlus(o.stabilizer, o.bias), "linear": _dense(o)},
        ),
    ),
    "epsilon_gamma_box": Preset(
        "z^B for the first convolution, γ for other convolutions, ε for dense layers",
        lambda o: Composite(
            "epsilon_gamma_box",
            first=ZBox(o.low, o.high, o.stabilizer),
            first_kinds=("conv",),
            by_type={"conv": Gamma(o.gamma, o.stabilizer, o.bias), "linear": _dense(o)},
        ),
    ),
    "epsilon_alpha2_beta1": Preset(
        "α2β1 for convolutions, ε for dense layers",
        lambda o: Composite(
            "epsilon_alpha2_beta1",
            first=AlphaBeta(2.0, 1.0, o.stabilizer, o.bias, coverage=True) if o.coverage else None,
            first_kinds=("conv",),
            by_type={"conv": AlphaBeta(2.0, 1.0, o.stabilizer, o.bias), "linear": _dense(o)},
        ),
    ),
    "epsilon_alpha2_beta1_flat": Preset(
        "flat for the first layer, α2β1 for convolutions, ε for dense layers",
        lambda o: Composite(
            "epsilon_alpha2_beta1_flat",
            first=Flat(o.stabilizer, o.coverage),
            by_type={"conv": AlphaBeta(2.0, 1.0, o.stabilizer, o.bias), "linear": _dense(o)},
        ),
    ),
}
"""The named composites (Zennit's layer assignment), by the name configs and ``--composite`` use."""


def preset(name: str, o: Options) -> Composite:
    """Build the preset ``name`` (``ValueError`` naming the presets if there is none)."""
    found = PRESETS.get(name)
    if found is None:
        raise ValueError(f"unknown composite {name!r}; choose one of: {', '.join(PRESETS)}")
    return found.build(o)


def _rule_from_spec(spec: Any, where: str, o: Options) -> AffineRule:
    if isinstance(spec, AffineRule):
        return spec
    if isinstance(spec, str):
        name, params = spec, {}
    elif isinstance(spec, Mapping):
        params = dict(spec)
        name = params.pop("rule", None)
        if not isinstance(name, str):
            raise ValueError(f"{where}: expected a 'rule' name, one of {', '.join(sorted(AFFINE_RULES))}")
    else:
        raise ValueError(f"{where}: expected a rule name or a mapping with 'rule', got {spec!r}")
    if name == "zbox":
        params.setdefault("low", o.low)
        params.setdefault("high", o.high)
    if name in AFFINE_RULES and "bias" in rule_params(name):  # rule_options.bias, unless the rule says
        params.setdefault("bias", o.bias)
    try:
        return make_rule(name, **params)
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from exc


def get_composite(spec: "str | Mapping[str, Any] | Composite", **options: Any) -> Composite:
    """A preset by name, a custom selector mapping, or a ready :class:`Composite`."""
    if isinstance(spec, Composite):
        return spec
    unknown = set(options) - set(Options.__dataclass_fields__)
    if unknown:
        raise TypeError(
            f"unknown option(s) {sorted(unknown)}; rule options are: {', '.join(Options.__dataclass_fields__)}"
        )
    o = Options(**options)
    if isinstance(spec, str):
        comp = preset(spec, o)
        comp.norm_stabilizer = o.stabilizer
        return comp
    if not isinstance(spec, Mapping):
        raise TypeError(f"composite must be a preset name or a mapping, got {type(spec).__name__}")
    spec = dict(spec)
    base = spec.pop("preset", None)
    comp = preset(base, o) if base is not None else Composite("custom")
    if base is not None:
        comp.name = f"{base}+custom" if spec else base
    else:
        comp.name = "custom"
    comp.norm_stabilizer = o.stabilizer
    for key, value in spec.items():
        where = f"rules.{key}"
        rule = _rule_from_spec(value, where, o)
        if key == "first":
            comp.first = rule
        elif key == "last":
            comp.last = rule
        elif key in TYPE_SELECTORS or (key[:1].isupper() and key.isidentifier()):
            comp.by_type[key] = rule
        else:
            comp.by_name.append((key, rule))
    return comp
