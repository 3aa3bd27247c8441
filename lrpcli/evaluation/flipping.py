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
better.

Perturbations are defined in pixel space [0, 1], before normalisation, and applied to the
normalised model input through the affine map ``pixel p → low + p · (high − low)``, where
``low``/``high`` are the normalised values of pixels 0 and 1
(:func:`lrpcli.images.pixel_bounds`). Blur and the mean colour commute with that map, so
every mode gives exactly what perturbing the [0, 1] image and normalising it would.
Random draws (uniform noise, tie-breaks, random orders) are seeded per image, and every
explainer of an image sees the same replacement values: only the order differs.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from lrpcli.core.engine import Explainer

__all__ = [
    "BASELINES",
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
    "summarize",
]

PerturbationName = Literal["uniform", "blur", "mean", "zero"]
OrderName = Literal["morf", "lerf"]

PERTURBATIONS: dict[str, str] = {
    "uniform": "each pixel of a perturbed patch becomes a uniform random value in [0, 1] "
    "(Samek et al. 2017)",
    "blur": "perturbed patches show a Gaussian-blurred copy of the image (sigma = P/2)",
    "mean": "perturbed patches take the image's mean colour",
    "zero": "perturbed patches become black (pixel value 0)",
}
ORDERS: dict[str, str] = {
    "morf": "most relevant first: a larger AOPC is better",
    "lerf": "least relevant first: a smaller AOPC is better",
}
RANDOM = "random"
BASELINES: dict[str, str] = {
    RANDOM: "patches in random order (a new permutation per run, curves averaged over runs)",
    "gradient": "sum over channels of |df/dx| at the model input (sensitivity)",
    "gradient_x_input": "sum over channels of x * df/dx at the model input (signed, like LRP)",
}

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


@dataclass(frozen=True)
class PatchGrid:
    """Non-overlapping ``patch x patch`` tiles of an ``height x width`` image, row by row."""

    height: int
    width: int
    patch: int

    def __post_init__(self) -> None:
        if self.patch < 1 or self.patch > min(self.height, self.width):
            raise ValueError(
                f"patch size {self.patch} does not fit a {self.height}x{self.width} image "
                f"(1..{min(self.height, self.width)})"
            )

    @property
    def rows(self) -> int:
        return math.ceil(self.height / self.patch)

    @property
    def cols(self) -> int:
        return math.ceil(self.width / self.patch)

    @property
    def count(self) -> int:
        return self.rows * self.cols

    def pixel_ids(self, device: torch.device | str | None = None) -> Tensor:
        """The patch index of every pixel, ``(height, width)``."""
        r = torch.arange(self.height, device=device) // self.patch
        c = torch.arange(self.width, device=device) // self.patch
        return r[:, None] * self.cols + c[None, :]

    def scores(self, heat: Tensor) -> Tensor:
        """``heat`` ``(height, width)`` summed over each patch: ``(count,)`` float64."""
        if tuple(heat.shape) != (self.height, self.width):
            raise ValueError(f"expected a {self.height}x{self.width} map, got shape {tuple(heat.shape)}")
        ids = self.pixel_ids(heat.device).flatten()
        out = torch.zeros(self.count, dtype=torch.float64, device=heat.device)
        return out.index_add_(0, ids, heat.detach().flatten().to(torch.float64))


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


def gaussian_blur(x: Tensor, sigma: float) -> Tensor:
    """``x`` ``(C, H, W)`` blurred per channel with a Gaussian of ``sigma`` px (edges replicated)."""
    radius = max(1, math.ceil(3 * sigma))
    t = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    kernel = torch.exp(-0.5 * (t / sigma) ** 2)
    kernel = kernel / kernel.sum()
    c = x.shape[0]
    y = F.pad(x[None], (radius, radius, 0, 0), mode="replicate")
    y = F.conv2d(y, kernel.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    y = F.pad(y, (0, 0, radius, radius), mode="replicate")
    y = F.conv2d(y, kernel.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)
    return y[0]


def replacement(
    x: Tensor, mode: str, low: Tensor, high: Tensor, *, patch: int, generator: torch.Generator
) -> Tensor:
    """The values perturbed pixels of the normalised image ``x`` ``(C, H, W)`` take.

    ``low``/``high``: the normalised values of pixels 0 and 1 (anything with ``C`` elements).
    """
    c = x.shape[0]
    lo = torch.as_tensor(low, dtype=x.dtype).reshape(c, 1, 1).to(x.device)
    hi = torch.as_tensor(high, dtype=x.dtype).reshape(c, 1, 1).to(x.device)
    if mode == "uniform":
        u = torch.rand(tuple(x.shape), generator=generator, dtype=x.dtype).to(x.device)
        return lo + u * (hi - lo)
    if mode == "zero":
        return lo.expand_as(x).clone()
    if mode == "mean":
        return x.mean(dim=(1, 2), keepdim=True).expand_as(x).clone()
    if mode == "blur":
        return gaussian_blur(x, patch / 2)
    raise ValueError(f"perturbation must be one of {', '.join(PERTURBATIONS)}, got {mode!r}")


def flip_curves(
    model: torch.nn.Module,
    x: Tensor,
    target: int,
    orders: Sequence[Tensor],
    grid: PatchGrid,
    fill: Tensor,
    steps: int,
    batch_size: int,
) -> tuple[Tensor, Tensor]:
    """Target logit and probability with the first ``k = 0..steps`` patches of each order replaced.

    ``x`` and ``fill`` are ``(C, H, W)``. All perturbed copies of the image (the clean one once,
    then ``steps`` per order) go through ``model`` together, ``batch_size`` at a time.
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
    which = [(0, 0)] + [(r, k) for r in range(len(orders)) for k in range(1, steps + 1)]
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
    raise ValueError(f"no relevance map for baseline {name!r}; map baselines: gradient, gradient_x_input")


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
    """The target on the clean image and every explainer's curve."""

    target: int
    logit: float
    probability: float
    curves: dict[str, Curve] = field(default_factory=dict)


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
) -> ImageResult:
    """Perturbation curves of one normalised image ``x`` ``(C, H, W)`` for every ranker.

    ``target``: the class whose logit is followed (None: the top-1 class on ``x``).
    With ``random``, adds the :data:`RANDOM` baseline (``settings.random_runs`` orders).
    ``image`` selects this image's random streams, so results do not depend on batching.
    """
    s = settings
    grid = PatchGrid(x.shape[-2], x.shape[-1], s.patch)
    if s.steps > grid.count:
        raise ValueError(f"{s.steps} steps but only {grid.count} patches of {s.patch}x{s.patch}")
    if target is None:
        with torch.inference_mode():
            target = int(model(x[None])[0].argmax())
    fill = replacement(x, s.perturbation, low, high, patch=s.patch, generator=_generator(s.seed, image, 0))
    names: list[str] = []
    orders: list[Tensor] = []
    for name, ranker in rankers.items():
        heat = ranker(x, target)
        orders.append(patch_order(grid.scores(heat), s.order, _generator(s.seed, image, 1)))
        names.append(name)
    runs = s.random_runs if random else 0
    for r in range(runs):
        orders.append(torch.randperm(grid.count, generator=_generator(s.seed, image, 2 + r)))
    logits, probs = flip_curves(model, x, target, orders, grid, fill, s.steps, s.batch_size)
    a_logit, a_prob = aopc(logits), aopc(probs)
    result = ImageResult(target=target, logit=float(logits[0, 0]), probability=float(probs[0, 0]))
    for j, name in enumerate(names):
        result.curves[name] = Curve(
            logits[j].tolist(), probs[j].tolist(), float(a_logit[j]), float(a_prob[j])
        )
    if runs:
        lo = len(names)
        result.curves[RANDOM] = Curve(
            logits[lo:].mean(dim=0).tolist(),
            probs[lo:].mean(dim=0).tolist(),
            float(a_logit[lo:].mean()),
            float(a_prob[lo:].mean()),
            aopc_logit_runs=a_logit[lo:].tolist(),
        )
    return result


def _mean_se(values: Tensor) -> tuple[Tensor, Tensor | None]:
    """Mean over dim 0 and its standard error (sample std / sqrt(n); None for n < 2)."""
    n = values.shape[0]
    mean = values.mean(dim=0)
    if n < 2:
        return mean, None
    return mean, values.std(dim=0, correction=1) / math.sqrt(n)


def summarize(results: Sequence[ImageResult], order: str) -> dict[str, Any]:
    """Per explainer: mean AOPC ± standard error over images and mean curves; and the ranking.

    Ranked by mean logit AOPC, descending for ``morf`` and ascending for ``lerf`` (better first).
    """
    if not results:
        return {"explainers": {}, "ranking": []}
    explainers: dict[str, Any] = {}
    for name in results[0].curves:
        curves = [r.curves[name] for r in results]
        logits = torch.tensor([c.logits for c in curves], dtype=torch.float64)
        probs = torch.tensor([c.probabilities for c in curves], dtype=torch.float64)
        a_logit, se_logit = _mean_se(torch.tensor([c.aopc_logit for c in curves], dtype=torch.float64))
        a_prob, se_prob = _mean_se(torch.tensor([c.aopc_probability for c in curves], dtype=torch.float64))
        drop, drop_se = _mean_se(logits[:, :1] - logits)
        prob, prob_se = _mean_se(probs)
        explainers[name] = {
            "images": len(curves),
            "aopc_logit": {"mean": float(a_logit), "se": None if se_logit is None else float(se_logit)},
            "aopc_probability": {"mean": float(a_prob), "se": None if se_prob is None else float(se_prob)},
            "mean_curve": {
                "logit_drop": drop.tolist(),
                "logit_drop_se": None if drop_se is None else drop_se.tolist(),
                "probability": prob.tolist(),
                "probability_se": None if prob_se is None else prob_se.tolist(),
            },
        }
    ranked = sorted(
        explainers, key=lambda n: explainers[n]["aopc_logit"]["mean"], reverse=order == "morf"
    )
    ranking = [
        {
            "rank": i + 1,
            "explainer": name,
            "aopc_logit_mean": explainers[name]["aopc_logit"]["mean"],
            "aopc_logit_se": explainers[name]["aopc_logit"]["se"],
        }
        for i, name in enumerate(ranked)
    ]
    return {"explainers": explainers, "ranking": ranking}
