"""The occlusion baseline (Zeiler & Fergus 2014): a patch's relevance is the drop of the target
logit when that patch alone is replaced.

    R(p) = f(x) − f(x with patch p replaced by the fill)

on the same patch grid and with the same fill (the replacement values) as pixel flipping, so
the map measures exactly the perturbation that the curves apply. It costs one forward pass per
patch (625 for a 224×224 crop in 9×9 patches), batched ``batch_size`` at a time: about six times
the forward passes of one explainer's MoRF curve at 100 steps.
"""

from __future__ import annotations

import torch
from torch import Tensor

from lrpcli.evaluation.perturb import PatchGrid

__all__ = ["occlusion_scores"]


def occlusion_scores(
    model: torch.nn.Module,
    x: Tensor,
    target: int,
    grid: PatchGrid,
    fill: Tensor,
    batch_size: int,
    *,
    clean_logit: float | None = None,
) -> Tensor:
    """``f(x) − f(x with patch p replaced by fill)`` for every patch ``p``: ``(grid.count,)`` float64.

    ``x`` and ``fill`` are ``(C, H, W)``; ``clean_logit`` is ``f(x)`` if known (else one more
    forward pass computes it).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    ids = grid.pixel_ids(x.device)
    with torch.inference_mode():
        if clean_logit is None:
            clean_logit = float(model(x[None])[0, target])
        out = torch.empty(grid.count, dtype=torch.float64)
        for start in range(0, grid.count, batch_size):
            patches = torch.arange(start, min(start + batch_size, grid.count), device=x.device)
            mask = (ids[None] == patches[:, None, None])[:, None]  # (B, 1, H, W)
            batch = torch.where(mask, fill[None], x[None])
            out[start : start + len(patches)] = model(batch)[:, target].to(torch.float64).cpu()
    return clean_logit - out
