"""Box bounds for the z^B rule: the pixel range mapped to a layer's input.

The textbook z^B rule needs ``low ≤ x ≤ high`` at its layer's input. Given bounds on the pixels
(the normalised values of pixels 0 and 1), :class:`BoxBounds` pushes them through the steps
before the layer, which must be monotone (padding, reshapes, element-wise activations), and
caches the result per input shape and bound values.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
from torch import Tensor

from .program import Program, Step, StepKind, UnsupportedOpError, resolve
from .rules import ZBox, value_key

__all__ = ["BoxBounds", "as_bounds"]

#: kinds that are not monotone maps of their input: z^B bounds cannot be pushed through them
_NOT_MONOTONE = frozenset(
    {StepKind.AFFINE, StepKind.GATE, StepKind.NORM, StepKind.FROZEN, StepKind.MIX, StepKind.STAT}
)


class BoxBounds:
    """z^B bounds at the input of any step of ``program`` (cached by value)."""

    def __init__(self, program: Program) -> None:
        self.program = program
        self._cache: dict[Any, tuple[Tensor, Tensor]] = {}

    def at(self, s: Step, rule: ZBox, x0: Tensor) -> tuple[Tensor, Tensor]:
        """Box bounds at the input of step ``s`` (pixel-space bounds mapped through what precedes it)."""
        low, high = rule.low, rule.high
        if low is None or high is None:
            warnings.warn(
                "zbox rule without low/high bounds: using each image's own per-channel min/max; "
                "pass low=/high= (the normalised values of pixels 0 and 1) for the textbook rule",
                stacklevel=4,
            )
            dims = [d for d in range(x0.ndim) if d not in (0, 1)]
            lo, hi = x0.amin(dim=dims, keepdim=True), x0.amax(dim=dims, keepdim=True)
        else:
            lo, hi = as_bounds(low, x0), as_bounds(high, x0)
        src = s.args[0].index
        if src == self.program.input_index:
            return lo, hi
        if lo.shape[0] != 1:  # per-image bounds: nothing to cache
            return self._map(src, lo, hi, x0)
        key = (src, tuple(x0.shape[1:]), value_key(lo), value_key(hi))  # by value: addresses get reused
        if key in self._cache:
            return self._cache[key]
        mapped = self._cache[key] = self._map(src, lo, hi, x0)
        return mapped

    def _map(self, src: int, lo: Tensor, hi: Tensor, x0: Tensor) -> tuple[Tensor, Tensor]:
        steps = self.program.steps
        needed = {src}
        for s in reversed(steps[: src + 1]):
            if s.index in needed:
                needed.update(r.index for r in s.refs())
        b = lo.shape[0]
        batch = torch.cat([lo.expand(b, *x0.shape[1:]), hi.expand(b, *x0.shape[1:])])
        env: list[Any] = [None] * len(steps)
        for s in steps[: src + 1]:
            if s.index not in needed or s.kind is StepKind.DEAD:
                continue
            if s.kind is StepKind.INPUT:
                env[s.index] = batch
                continue
            if s.kind in _NOT_MONOTONE and s.live:
                raise UnsupportedOpError(
                    "the zbox rule", s.name, s.module,
                    "z^B needs bounds on its layer input; this layer is not fed by the pixels through "
                    "monotone steps only — assign zbox to the first layer only",
                )  # fmt: skip
            env[s.index] = s.fn(*resolve(s.args, env), **resolve(s.kwargs, env))
        out = env[src]
        return out[:b], out[b:]


def as_bounds(v: Any, x: Tensor) -> Tensor:
    """``v`` (a number, one per channel, or a full tensor) shaped to broadcast against ``x``."""
    t = torch.as_tensor(v, dtype=x.dtype, device=x.device)
    if t.ndim == 0:
        return t.view(1, *([1] * (x.ndim - 1)))
    if t.ndim == 1:
        if t.shape[0] != x.shape[1]:
            raise ValueError(f"box bounds have {t.shape[0]} values but the input has {x.shape[1]} channels")
        return t.view(1, -1, *([1] * (x.ndim - 2)))
    if t.ndim != x.ndim:
        raise ValueError(f"box bounds of shape {tuple(t.shape)} do not broadcast to inputs {tuple(x.shape)}")
    return t
