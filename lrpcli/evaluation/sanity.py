"""Model-randomisation sanity check (Adebayo et al. 2018): does the explanation depend on the weights?

A deep copy of the model has the weights of its top (last) affine layers re-initialised,
cascading from the output: the last layer, the last three, then all of them (levels that
coincide on a small model are merged). "Affine layers" are the ``nn.Linear`` and ``nn.Conv*d``
modules in registration order, which is the forward order of the models lrpcli ships.
Re-initialised weights (and biases) are drawn from ``N(0, σ²)`` with σ the standard deviation
of the layer's original weights (biases: of its original biases), seeded, so activations keep
their scale. The map on each image (relevance summed over channels, same target as the
original) is compared with the original map by the Spearman rank correlation over pixels: an
explanation that passes the check decorrelates as more layers are randomised; 1 means the
map ignores those weights.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from lrpcli.evaluation.stats import average_ranks

__all__ = ["TOP_LEVELS", "affine_layers", "randomized_copy", "sanity_levels", "sanity_summary", "spearman"]

TOP_LEVELS: tuple[int, ...] = (1, 3)
"""Cascading levels below "all": the last 1 and the last 3 affine layers."""

_AFFINE = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def affine_layers(model: nn.Module) -> list[str]:
    """Names of the model's ``Linear``/``Conv`` modules, in registration (forward) order."""
    return [name for name, m in model.named_modules() if isinstance(m, _AFFINE)]


def sanity_levels(count: int) -> dict[str, int]:
    """Level name → number of top affine layers re-initialised (``top 1``, ``top 3``, ``all``)."""
    if count < 1:
        raise ValueError("the model has no Linear or Conv layer to re-initialise")
    levels = {f"top {k}": k for k in TOP_LEVELS if k < count}
    levels["all"] = count
    return levels


def randomized_copy(model: nn.Module, layers: int, *, seed: int) -> nn.Module:
    """A deep copy of ``model`` with its last ``layers`` affine layers re-initialised (seeded)."""
    twin = copy.deepcopy(model)
    names = affine_layers(twin)
    if not 0 <= layers <= len(names):
        raise ValueError(f"layers must be in 0..{len(names)}, got {layers}")
    modules = dict(twin.named_modules())
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name in names[len(names) - layers :]:
            for param in (modules[name].weight, modules[name].bias):
                if param is None:
                    continue
                std = float(param.detach().float().std()) if param.numel() > 1 else 0.0
                std = std if math.isfinite(std) and std > 0 else 0.01
                draw = torch.randn(tuple(param.shape), generator=generator, dtype=torch.float64) * std
                param.copy_(draw.to(param.dtype))
    return twin


def spearman(a: Tensor | np.ndarray, b: Tensor | np.ndarray) -> float:
    """Spearman's rank correlation of two equally shaped maps (average ranks for ties; NaN if constant)."""
    x = torch.as_tensor(a).detach().cpu().to(torch.float64).flatten().numpy()
    y = torch.as_tensor(b).detach().cpu().to(torch.float64).flatten().numpy()
    if x.shape != y.shape:
        raise ValueError(f"maps of different sizes: {x.size} and {y.size} values")
    rx, ry = average_ranks(x), average_ranks(y)
    rx, ry = rx - rx.mean(), ry - ry.mean()
    sxx, syy = float(np.dot(rx, rx)), float(np.dot(ry, ry))
    if sxx == 0 or syy == 0:
        return math.nan
    return float(np.dot(rx, ry)) / math.sqrt(sxx * syy)


def sanity_summary(values: Mapping[str, Mapping[str, Sequence[float]]]) -> dict[str, Any]:
    """``{explainer: {level: [ρ per image]}}`` → mean ± standard error of ρ per explainer and level.

    Images where ρ is undefined (a constant map) are left out and counted.
    """
    out: dict[str, Any] = {}
    for name, levels in values.items():
        out[name] = {}
        for level, rhos in levels.items():
            finite = np.asarray([r for r in rhos if math.isfinite(r)], dtype=np.float64)
            n = len(finite)
            mean = float(finite.mean()) if n else None
            se = float(finite.std(ddof=1) / math.sqrt(n)) if n > 1 else None
            out[name][level] = {"mean": mean, "se": se, "images": n, "undefined": len(rhos) - n}
    return out
