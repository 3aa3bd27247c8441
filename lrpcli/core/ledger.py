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
    #: not absorbed: the bias share a ``bias="distribute"`` rule passed on to the inputs (in ``r_in``)
    distributed: Tensor | None = None

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
    #: per image: "float32" or "float64" (the dtype the image was computed in)
    precision: list[str] = field(default_factory=list)

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
            if mine.distributed is not None and theirs.distributed is not None:
                mine.distributed = put(mine.distributed, theirs.distributed)
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
        return self._relative(self.closure_error())

    def _relative(self, closure: Tensor) -> Tensor:
        return closure.abs() / self.output.abs().clamp(min=torch.finfo(torch.float64).tiny)

    def distributed(self) -> Tensor:
        """Σ over steps of the bias shares passed on to the inputs (``bias="distribute"``), per image."""
        total = torch.zeros_like(self.output)
        for e in self.entries:
            if e.distributed is not None:
                total = total + e.distributed
        return total

    def pixel_share(self) -> Tensor:
        """``ΣR_pixels / f(x)`` per image: how much of the explained output reaches the pixels
        (NaN where f(x) = 0)."""
        zero = self.output == 0
        share = self.pixels / torch.where(zero, torch.ones_like(self.output), self.output)
        return torch.where(zero, torch.full_like(share, float("nan")), share)

    def conservation_error(self) -> Tensor:
        """``ΣR_pixels − f(x)`` per image: how far the heatmap's total is from the explained output."""
        return self.pixels - self.output

    def accounts(self) -> "Accounts":
        """The whole batch's account as plain Python numbers, in one transfer per quantity."""
        if self.entries:
            names = ("r_out", "r_in", "bias", "stabilizer", "dropped")
            table = torch.stack([torch.stack([getattr(e, n) for e in self.entries]) for n in names])
            table = table.to("cpu", torch.float64)  # (5, steps, N)
            residual = (table[0] - table[1]) - (table[2] + table[3] + table[4])  # as LedgerEntry.residual
            values = torch.cat([table, residual[None]]).permute(2, 1, 0).tolist()  # [image][step][6]
            totals = table[2:5].sum(1).T.tolist()
        else:
            values = [[] for _ in range(self.output.shape[0])]
            totals = [[0.0, 0.0, 0.0] for _ in range(self.output.shape[0])]
        closure = self.closure_error()
        spread = [None if e.distributed is None else e.distributed.tolist() for e in self.entries]
        return Accounts(
            steps=[(e.step, e.op, e.module, e.rule) for e in self.entries],
            values=values,
            totals=totals,
            f_x=self.output.tolist(),
            sum_pixels=self.pixels.tolist(),
            closure_error=closure.tolist(),
            relative_closure_error=self._relative(closure).tolist(),
            precision=list(self.precision),
            distributed=spread,
            pixel_share=self.pixel_share().tolist(),
        )

    def image(self, i: int, *, steps: bool = True) -> dict[str, Any]:
        """The account of image ``i`` as plain JSON-able data (see :meth:`Accounts.image`)."""
        return self.accounts().image(i, steps=steps)


@dataclass(frozen=True)
class Accounts:
    """A batch's ledger as plain Python numbers: ``values[image][step]`` is
    ``[r_out, r_in, bias, stabilizer, dropped, residual]``, ``totals[image]`` the summed
    ``[bias, stabilizer, dropped]``. Made from tensors once per batch (:meth:`Ledger.accounts`);
    turning one image's account into JSON-able data is then plain Python."""

    steps: list[tuple[str, str, str | None, str]]  # (step, op, module, rule)
    values: list[list[list[float]]]
    totals: list[list[float]]
    f_x: list[float]
    sum_pixels: list[float]
    closure_error: list[float]
    relative_closure_error: list[float]
    precision: list[str]
    distributed: list[list[float] | None] = field(default_factory=list)  # [step][image], None: not distributing
    pixel_share: list[float] = field(default_factory=list)

    def image(self, i: int, *, steps: bool | int = True) -> dict[str, Any]:
        """The account of image ``i``: totals, closure and (with ``steps``) one row per step.

        ``steps`` True lists every step, False none, a number ``k`` only the ``k`` steps that
        absorbed most (largest ``|bias| + |stabilizer| + |dropped|``), in program order, with
        ``steps_total`` saying how many there are.
        """
        bias, stabilizer, dropped = self.totals[i]
        spread = [d[i] if d is not None else None for d in self.distributed] or [None] * len(self.steps)
        out: dict[str, Any] = {
            "precision": self.precision[i] if self.precision else None,
            "f_x": self.f_x[i],
            "sum_pixels": self.sum_pixels[i],
            "pixel_share": self.pixel_share[i] if self.pixel_share else None,
            "absorbed": {"bias": bias, "stabilizer": stabilizer, "dropped": dropped},
            "distributed_bias": sum((d for d in spread if d is not None), 0.0),
            "closure_error": self.closure_error[i],
            "relative_closure_error": self.relative_closure_error[i],
        }
        listed = range(len(self.steps))
        if steps is not True and steps:
            weight = [abs(v[2]) + abs(v[3]) + abs(v[4]) for v in self.values[i]]
            listed = sorted(sorted(listed, key=lambda k: -weight[k])[: int(steps)])
            out["steps_total"] = len(self.steps)
        if steps:
            out["steps"] = [
                {
                    "step": step,
                    "op": op,
                    "module": module,
                    "rule": rule,
                    "r_out": v[0],
                    "r_in": v[1],
                    "bias": v[2],
                    "stabilizer": v[3],
                    "dropped": v[4],
                    "residual": v[5],
                    **({} if d is None else {"distributed": d}),
                }
                for (step, op, module, rule), v, d in (
                    (self.steps[k], self.values[i][k], spread[k]) for k in listed
                )
            ]
        return out
