"""Pixel-flipping faithfulness: rank patches by relevance, perturb them in order, measure AOPC.

Region perturbation after Bach et al. (2015) and Samek et al. (2017, "Evaluating the
visualization of what a deep neural network has learned"). The model's input crop is cut into
non-overlapping ``P x P`` patches (a grid of ``ceil(H/P) x ceil(W/P)``; the last row and column
are narrower when ``P`` does not divide the size). An explanation ranks the patches by their
summed relevance; step ``k`` (``k = 0..L``) has the first ``k`` patches of that order perturbed,
one more patch per step. The curve is the target logit ``f(x^k)`` (and its softmax probability);

    AOPC = 1/(L+1) · Σ_{k=0..L} (f(x^0) − f(x^k)).

Most relevant first (MoRF), a faithful explanation makes ``f`` fall early: a larger AOPC is
better. Least relevant first (LeRF), a faithful explanation keeps ``f`` up: a smaller AOPC is
better. Order ``both`` runs the two on the same fill, LeRF taking the reversed MoRF order (so
ties, broken at random for MoRF, come reversed), and scores each explainer per image by the
symmetric relevance gain (Blücher et al. 2024; the area between the two curves of Samek 2017):

    SRG = 1/(L+1) · Σ_k f(x^k_LeRF) − 1/(L+1) · Σ_k f(x^k_MoRF) = AOPC_MoRF − AOPC_LeRF,

larger is better (0 for an order that knows nothing, e.g. random).

Perturbations (:mod:`lrpcli.evaluation.perturb`) are defined in pixel space [0, 1], before
normalisation. Random draws (uniform noise, tie-breaks, random orders) are seeded per image,
and every explainer of an image sees the same replacement values: only the order differs.
Forward passes: the clean image once (shared by the target, step 0 and occlusion), then
``L`` per order, every order of every explainer in one batched stream.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from lrpcli.core.engine import Explainer
from lrpcli.evaluation.choices import (
    BASELINES,
    DEFAULT_BASELINES,
    OCCLUSION,
    ORDERS,
    PERTURBATIONS,
    RANDOM,
    OrderName,
    PerturbationName,
)
from lrpcli.evaluation.occlusion import occlusion_scores
from lrpcli.evaluation.perturb import PatchGrid, gaussian_blur, replacement

__all__ = [
    "BASELINES",
    "DEFAULT_BASELINES",
    "OCCLUSION",
    "ORDERS",
    "PERTURBATIONS",
    "RANDOM",
    "OrderName",
    "PerturbationName",
    "Curve",
    "FlipSettings",
    "ImageResult",
    "PatchGrid",
    "Ranker",
    "aopc",
    "baseline_ranker",
    "evaluate_image",
    "flip_curves",
    "gaussian_blur",
    "input_gradient",
    "lrp_ranker",
    "patch_order",
    "replacement",
]

Ranker = Callable[[Tensor, int], Tensor]
"""Maps a normalised image ``(C, H, W)`` and a target class to a relevance map ``(H, W)``."""


@dataclass(frozen=True)
class FlipSettings:
    """How to perturb: patch size, steps, replacement, order, random runs, seed, batch size."""

    patch: int = 9
    steps: int = 100
    perturbation: str = "uniform"
    order: str = "morf"
    random_runs: int = 5
    seed: int = 0
    batch_size: int = 32

    def __post_init__(self) -> None:
        if self.patch < 1 or self.steps < 1 or self.random_runs < 1 or self.batch_size < 1:
            raise ValueError("patch, steps, random_runs and batch_size must be at least 1")
        if self.perturbation not in PERTURBATIONS:
            choices = ", ".join(PERTURBATIONS)
            raise ValueError(f"perturbation must be one of {choices}, got {self.perturbation!r}")
        if self.order not in ORDERS:
            raise ValueError(f"order must be one of {', '.join(ORDERS)}, got {self.order!r}")

    @property
    def orders(self) -> tuple[str, ...]:
        """The orders run: ``("morf",)``, ``("lerf",)`` or ``("morf", "lerf")``."""
        return ("morf", "lerf") if self.order == "both" else (self.order,)


def _generator(seed: int, image: int, stream: int) -> torch.Generator:
    """An independent, reproducible CPU generator for (seed, image, stream)."""
    state = np.random.SeedSequence([seed, image, stream]).generate_state(2, dtype=np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))


def patch_order(scores: Tensor, order: str, generator: torch.Generator) -> Tensor:
    """Patch indices by score, highest first (``morf``) or lowest first (``lerf``).

    Ties (e.g. patches of zero relevance) come in random order, drawn from ``generator``; NaN
    scores count as the least relevant.
    """
    m = scores.numel()
    perm = torch.randperm(m, generator=generator)
    s = scores.detach().flatten().cpu().to(torch.float64)[perm]
    s = torch.nan_to_num(s, nan=-math.inf)
    ranked = torch.argsort(s, descending=order == "morf", stable=True)
    return perm[ranked]


def flip_curves(
    model: torch.nn.Module,
    x: Tensor,
    target: int,
    orders: Sequence[Tensor],
    grid: PatchGrid,
    fill: Tensor,
    steps: int,
    batch_size: int,
    *,
    clean: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Target logit and probability with the first ``k = 0..steps`` patches of each order replaced.

    ``x`` and ``fill`` are ``(C, H, W)``. All perturbed copies of the image (the clean one once,
    unless ``clean``, the model's output row on ``x``, is given; then ``steps`` per order) go
    through ``model`` together, ``batch_size`` at a time.
    Returns two float64 tensors of shape ``(len(orders), steps + 1)``.
    """
    if steps > grid.count:
        raise ValueError(f"{steps} steps but only {grid.count} patches")
    ids = grid.pixel_ids()
    ranks = []
    for order in orders:
        rank = torch.empty(grid.count, dtype=torch.long)
        rank[order.cpu()] = torch.arange(grid.count)
        ranks.append(rank[ids])
    rank_pix = torch.stack(ranks).to(x.device)  # (R, H, W): the step at which each pixel goes
    which = [] if clean is not None else [(0, 0)]
    which += [(r, k) for r in range(len(orders)) for k in range(1, steps + 1)]
    logits = torch.empty(len(which), dtype=torch.float64)
    probs = torch.empty(len(which), dtype=torch.float64)
    for start in range(0, len(which), batch_size):
        chunk = which[start : start + batch_size]
        r = torch.tensor([w[0] for w in chunk], device=x.device)
        k = torch.tensor([w[1] for w in chunk], device=x.device)
        mask = (rank_pix[r] < k[:, None, None])[:, None]  # (B, 1, H, W)
        batch = torch.where(mask, fill[None], x[None])
        with torch.inference_mode():
            out = model(batch).to(torch.float64)
        logits[start : start + len(chunk)] = out[:, target].cpu()
        probs[start : start + len(chunk)] = out.softmax(dim=1)[:, target].cpu()
    if clean is not None:
        row = clean.detach().to(torch.float64).cpu()
        logits = torch.cat([row[target : target + 1], logits])
        probs = torch.cat([row.softmax(dim=0)[target : target + 1], probs])
    shape = (len(orders), steps)
    clean_l, clean_p = logits[:1].expand(len(orders), 1), probs[:1].expand(len(orders), 1)
    return (
        torch.cat([clean_l, logits[1:].view(shape)], dim=1),
        torch.cat([clean_p, probs[1:].view(shape)], dim=1),
    )


def aopc(curve: Tensor) -> Tensor:
    """Area over the perturbation curve(s): mean over k of ``curve[..., 0] − curve[..., k]``."""
    return (curve[..., :1] - curve).mean(dim=-1)


def input_gradient(model: torch.nn.Module, x: Tensor, target: int) -> Tensor:
    """``df_target/dx`` at the normalised image ``x`` ``(C, H, W)``; parameters' ``.grad`` untouched."""
    with torch.enable_grad():
        xi = x.detach()[None].clone().requires_grad_(True)
        out = model(xi)
        (grad,) = torch.autograd.grad(out[0, target], xi)
    return grad[0].detach()


def lrp_ranker(explainer: Explainer) -> Ranker:
    """LRP relevance with ``explainer``'s composite, summed over channels."""

    def rank(x: Tensor, target: int) -> Tensor:
        return explainer(x[None], target).relevance[0].sum(dim=0)

    return rank


def baseline_ranker(name: str, model: torch.nn.Module) -> Ranker:
    """The gradient baselines of :data:`BASELINES` (``random`` needs no map)."""
    if name == "gradient":
        return lambda x, target: input_gradient(model, x, target).abs().sum(dim=0)
    if name == "gradient_x_input":
        return lambda x, target: (input_gradient(model, x, target) * x).sum(dim=0)
    raise ValueError(
        f"no relevance map for baseline {name!r}; map baselines: gradient, gradient_x_input "
        "(random and occlusion are options of evaluate_image)"
    )


@dataclass
class Curve:
    """One explainer's perturbation curve on one image (for ``random``: the mean over runs)."""

    logits: list[float]  # target logit f(x^k), k = 0..L
    probabilities: list[float]  # softmax probability of the target
    aopc_logit: float
    aopc_probability: float
    aopc_logit_runs: list[float] | None = None  # random: one AOPC per run

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"aopc_logit": self.aopc_logit, "aopc_probability": self.aopc_probability}
        if self.aopc_logit_runs is not None:
            d["runs"] = len(self.aopc_logit_runs)
            d["aopc_logit_runs"] = self.aopc_logit_runs
        d["logits"] = self.logits
        d["probabilities"] = self.probabilities
        return d




@dataclass
class ImageResult:
    """The target on the clean image and every explainer's curves.

    ``curves``: the first order's curves (MoRF for orders ``morf`` and ``both``, LeRF for
    ``lerf``); ``lerf_curves``: with order ``both``, the LeRF curves (else None).
    """

    target: int
    logit: float
    probability: float
    curves: dict[str, Curve] = field(default_factory=dict)
    lerf_curves: dict[str, Curve] | None = None
    order: str = "morf"

    def by_order(self) -> dict[str, dict[str, Curve]]:
        """The curves keyed by order name: ``{"morf": ..., "lerf": ...}`` (the orders run)."""
        if self.order == "both":
            return {"morf": self.curves, "lerf": self.lerf_curves or {}}
        return {self.order: self.curves}

    def srg(self) -> dict[str, float]:
        """Per explainer ``AOPC_MoRF − AOPC_LeRF`` (logit); needs order ``both``."""
        if self.order != "both" or self.lerf_curves is None:
            raise ValueError(f"SRG needs order 'both', this result has order {self.order!r}")
        return {n: c.aopc_logit - self.lerf_curves[n].aopc_logit for n, c in self.curves.items()}


def _curves(names: Sequence[str], logits: Tensor, probs: Tensor, runs: int) -> dict[str, Curve]:
    """Curves of the named orders (rows ``0..len(names)``), then the mean of ``runs`` random rows."""
    a_logit, a_prob = aopc(logits), aopc(probs)
    curves = {
        name: Curve(logits[j].tolist(), probs[j].tolist(), float(a_logit[j]), float(a_prob[j]))
        for j, name in enumerate(names)
    }
    if runs:
        lo = len(names)
        curves[RANDOM] = Curve(
            logits[lo:].mean(dim=0).tolist(),
            probs[lo:].mean(dim=0).tolist(),
            float(a_logit[lo:].mean()),
            float(a_prob[lo:].mean()),
            aopc_logit_runs=a_logit[lo:].tolist(),
        )
    return curves


def evaluate_image(
    model: torch.nn.Module,
    x: Tensor,
    rankers: Mapping[str, Ranker],
    settings: FlipSettings,
    *,
    low: Tensor,
    high: Tensor,
    random: bool = True,
    image: int = 0,
    target: int | None = None,
    occlusion: bool = False,
) -> ImageResult:
    """Perturbation curves of one normalised image ``x`` ``(C, H, W)`` for every ranker.

    ``target``: the class whose logit is followed (None: the top-1 class on ``x``).
    With ``random``, adds the :data:`RANDOM` baseline (``settings.random_runs`` orders); with
    ``occlusion``, the :data:`OCCLUSION` baseline (one forward pass per patch, see
    :mod:`lrpcli.evaluation.occlusion`). ``image`` selects this image's random streams, so
    results do not depend on batching. Curves are named as the rankers, then occlusion, random.
    """
    s = settings
    grid = PatchGrid(x.shape[-2], x.shape[-1], s.patch)
    if s.steps > grid.count:
        raise ValueError(f"{s.steps} steps but only {grid.count} patches of {s.patch}x{s.patch}")
    clean: Tensor | None = None
    if target is None or occlusion:
        with torch.inference_mode():
            clean = model(x[None])[0]
        target = int(clean.argmax()) if target is None else target
    fill = replacement(x, s.perturbation, low, high, patch=s.patch, generator=_generator(s.seed, image, 0))
    first = "lerf" if s.order == "lerf" else "morf"
    scores = {name: grid.scores(ranker(x, target)) for name, ranker in rankers.items()}
    if occlusion:
        assert clean is not None
        clean_logit = float(clean[target])
        scores[OCCLUSION] = occlusion_scores(model, x, target, grid, fill, s.batch_size, clean_logit=clean_logit)
    names = list(scores)
    orders = [patch_order(sc, first, _generator(s.seed, image, 1)) for sc in scores.values()]
    runs = s.random_runs if random else 0
    orders += [torch.randperm(grid.count, generator=_generator(s.seed, image, 2 + r)) for r in range(runs)]
    if s.order == "both":
        orders += [o.flip(0) for o in orders]
    logits, probs = flip_curves(model, x, target, orders, grid, fill, s.steps, s.batch_size, clean=clean)
    half = len(names) + runs
    result = ImageResult(target, float(logits[0, 0]), float(probs[0, 0]), order=s.order)
    result.curves = _curves(names, logits[:half], probs[:half], runs)
    if s.order == "both":
        result.lerf_curves = _curves(names, logits[half:], probs[half:], runs)
    return result
