"""The conservation ledger: where the explained output's relevance went, layer by layer.

For every step that relevance passed through, the ledger keeps, per image, the relevance that
entered it from above (``r_out``, at the step's output), the relevance it sent down
(``r_in``) and what its rule absorbed by formula: ``bias``, ``stabilizer`` (ε and other
denominator terms) and ``dropped`` (relevance the rule sends nowhere, e.g. γ at outputs that
are exactly zero). Since the absorbed parts are computed from the rule's formula and not as
``r_out - r_in``, the closure ``f(x) = ΣR_pixels + Σ absorbed`` is a real check.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor


@dataclass
class LedgerEntry:
    """One step's relevance account (each tensor has shape ``(N,)``, float64)."""

    step: str
    op: str
    module: str | None
    rule: str
    r_out: Tensor
    r_in: Tensor
    bias: Tensor
    stabilizer: Tensor
    dropped: Tensor

    @property
    def absorbed(self) -> Tensor:
        """Relevance absorbed by formula."""
        return self.bias + self.stabilizer + self.dropped

    @property
    def residual(self) -> Tensor:
        """Measured loss not explained by the formula (floating-point rounding)."""
        return (self.r_out - self.r_in) - self.absorbed


@dataclass
class Ledger:
    """Per-step entries plus the totals for a batch."""

    output: Tensor  # f(x) per image
    pixels: Tensor  # ΣR at the input per image
    entries: list[LedgerEntry] = field(default_factory=list)
    precision: list[str] = field(default_factory=list)  # per image: "float32" or "float64"

    def splice(self, rows: Tensor, other: "Ledger") -> None:
        """Replace the accounts of images ``rows`` by those of ``other`` (same steps, len(rows) images)."""
        if [e.step for e in self.entries] != [e.step for e in other.entries]:
            raise ValueError("cannot splice ledgers of different graphs")
        def put(old: Tensor, new: Tensor) -> Tensor:
            out = old.clone()  # entries may share tensors (e.g. one zeros vector)
            out[rows] = new.to(out.dtype)
            return out

        self.output = put(self.output, other.output)
        self.pixels = put(self.pixels, other.pixels)
        for mine, theirs in zip(self.entries, other.entries):
            for name in ("r_out", "r_in", "bias", "stabilizer", "dropped"):
                setattr(mine, name, put(getattr(mine, name), getattr(theirs, name)))
        for k, i in enumerate(rows.tolist()):
            self.precision[i] = other.precision[k]

    def absorbed(self) -> Tensor:
        """Σ over steps of the relevance absorbed by formula, per image."""
        total = torch.zeros_like(self.output)
        for e in self.entries:
            total = total + e.absorbed
        return total

    def closure_error(self) -> Tensor:
        """``f(x) − ΣR_pixels − Σ absorbed`` per image: zero up to rounding."""
        return self.output - self.pixels - self.absorbed()

    def relative_error(self) -> Tensor:
        """``|closure error| / |f(x)|`` per image."""
        return self.closure_error().abs() / self.output.abs().clamp(min=torch.finfo(torch.float64).tiny)

    def conservation_error(self) -> Tensor:
        """``ΣR_pixels − f(x)`` per image: how far the heatmap's total is from the explained output."""
        return self.pixels - self.output

    def image(self, i: int, *, steps: bool = True) -> dict[str, Any]:
        """The account of image ``i`` as plain JSON-able data."""
        totals = {"bias": 0.0, "stabilizer": 0.0, "dropped": 0.0}
        rows = []
        for e in self.entries:
            b, s, d = float(e.bias[i]), float(e.stabilizer[i]), float(e.dropped[i])
            totals["bias"] += b
            totals["stabilizer"] += s
            totals["dropped"] += d
            if steps:
                rows.append(
                    {
                        "step": e.step,
                        "op": e.op,
                        "module": e.module,
                        "rule": e.rule,
                        "r_out": float(e.r_out[i]),
                        "r_in": float(e.r_in[i]),
                        "bias": b,
                        "stabilizer": s,
                        "dropped": d,
                        "residual": float(e.residual[i]),
                    }
                )
        out: dict[str, Any] = {
            "precision": self.precision[i] if self.precision else None,
            "f_x": float(self.output[i]),
            "sum_pixels": float(self.pixels[i]),
            "absorbed": totals,
            "closure_error": float(self.closure_error()[i]),
            "relative_closure_error": float(self.relative_error()[i]),
        }
        if steps:
            out["steps"] = rows
        return out
