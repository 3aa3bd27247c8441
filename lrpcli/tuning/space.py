"""The candidates `lrp tune` searches: composites with their hyperparameters.

A candidate is a composite in the config's own form (``rules`` and ``rule_options``), so the
winner can be written out as a ready config. The space crosses a first-layer rule (flat, z^B,
w²; flat and w² coverage-normalised), a rule for the other convolutions (ε with ε a multiple of each
layer's pre-activation std, γ, z⁺, αβ), the bias treatment, and, where the model is built of
numbered blocks (``blocks.3``, ``features.10``, ``layer2.1``), overrides that give the lower
half of the blocks γ and the upper half ε (Montavon et al. 2019's layer-wise recipe).
Dense layers keep ε = 1e-6 throughout.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

#: sizes of the space (``--space``): how many values of each hyperparameter are tried
SPACES = ("small", "standard", "large")

_NUMBERED = re.compile(r"^(.*?\.\d+)(\.|$)")


@dataclass(frozen=True)
class Candidate:
    """One configuration: a name, the ``rules`` mapping and the ``rule_options`` it needs."""

    name: str
    rules: dict[str, Any]
    options: dict[str, Any] = field(default_factory=dict)

    def config_sections(self) -> dict[str, Any]:
        """The ``rules`` and ``rule_options`` sections of a config for this candidate."""
        return {"rules": self.rules, "rule_options": dict(self.options)}


def block_prefixes(layer_names: Sequence[str]) -> list[str]:
    """The model's numbered blocks in execution order (``blocks.0``, ``blocks.1``, …).

    A block is a module path up to its first numeric component; layers outside any block (a
    stem, a head) are left out.
    """
    out: list[str] = []
    for name in layer_names:
        m = _NUMBERED.match(name)
        if m and m.group(1) not in out:
            out.append(m.group(1))
    return out


def _conv_rules(space: str) -> list[tuple[str, dict[str, Any]]]:
    stds = {"small": ["0.25std", "1std"], "standard": ["0.1std", "0.25std", "0.5std", "1std"],
            "large": ["0.05std", "0.1std", "0.25std", "0.5std", "1std", "2std"]}[space]  # fmt: skip
    gammas = {"small": [0.25], "standard": [0.1, 0.25, 0.5], "large": [0.05, 0.1, 0.25, 0.5, 1.0]}[space]
    rules: list[tuple[str, dict[str, Any]]] = [(f"eps{e}", {"rule": "epsilon", "epsilon": e}) for e in stds]
    rules += [(f"gamma{g:g}", {"rule": "gamma", "gamma": g}) for g in gammas]
    rules.append(("zplus", {"rule": "zplus"}))
    if space != "small":
        rules.append(("a2b1", {"rule": "alpha_beta", "alpha": 2.0, "beta": 1.0}))
    return rules


def search_space(layer_names: Sequence[str], space: str = "standard", *, first_kind: str = "conv") -> list[Candidate]:
    """Every candidate for a model whose conv/dense layers have ``layer_names`` (execution order).

    ``first_kind``: ``"conv"`` when the first layer is a convolution (then z^B is a choice).
    """
    if space not in SPACES:
        raise ValueError(f"unknown search space {space!r}; choose one of: {', '.join(SPACES)}")
    firsts: list[tuple[str, dict[str, Any]]] = [("flat", {"rule": "flat", "coverage": True})]
    if first_kind == "conv":
        firsts.append(("zbox", {"rule": "zbox"}))  # coverage makes z^B more gridded (measured)
    if space != "small":
        firsts.append(("wsquare", {"rule": "wsquare", "coverage": True}))
    blocks = block_prefixes(layer_names)
    lower = blocks[: len(blocks) // 2] if len(blocks) >= 4 else []
    out: list[Candidate] = []
    for fname, first in firsts:
        for cname, conv in _conv_rules(space):
            for bias in ("absorb", "distribute"):
                base = {"first": first, "conv": conv, "linear": {"rule": "epsilon", "epsilon": 1e-6}}
                options = {"bias": bias}
                out.append(Candidate(f"{fname}/{cname}/{bias}", base, options))
                if lower and conv["rule"] == "epsilon":  # γ below, ε above
                    split = dict(base)
                    for prefix in lower:
                        split[f"{prefix}.*"] = {"rule": "gamma", "gamma": 0.25}
                    out.append(Candidate(f"{fname}/gamma0.25<{blocks[len(lower)]}<{cname}/{bias}", split, options))
    return out
