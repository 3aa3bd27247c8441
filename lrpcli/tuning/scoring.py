"""How `lrp tune` scores a candidate on one image: pixel flipping, plus what the map looks like.

``aopc`` is the MoRF AOPC of the target logit (higher is better); ``srg`` is the MoRF − LeRF
AOPC difference (the area between the curves, higher is better), which costs twice the forward
passes. Every call also records the map's pixel share ``ΣR_pixels / f(x)`` and negative share
``Σ|R⁻| / Σ|R|`` (on the channel-summed map the heatmap shows).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch import Tensor

from lrpcli.core.engine import Explainer
from lrpcli.evaluation.flipping import FlipSettings, Ranker, evaluate_image
from lrpcli.tuning.choices import SCORES


@dataclass(frozen=True)
class MapStats:
    """What one explanation looks like, beside its faithfulness."""

    pixel_share: float
    negative_share: float


def negative_share(heat: Tensor) -> float:
    """``Σ|R⁻| / Σ|R|`` of a map (0 for an all-zero map)."""
    total = float(heat.abs().sum())
    return float((-heat.clamp(max=0)).sum()) / total if total > 0 else 0.0


@dataclass
class Scorer:
    """Scores candidates (built lazily, one :class:`Explainer` each) on preprocessed images."""

    model: torch.nn.Module
    build: Callable[[str], Explainer]
    images: Sequence[Tensor]  # normalised (C, H, W), on the model's device
    settings: FlipSettings
    low: Tensor
    high: Tensor
    score: str = "aopc"
    image_ids: Sequence[int] | None = None  # random streams per image (default: the position)
    stats: dict[str, dict[int, MapStats]] = field(default_factory=dict)
    _explainers: dict[str, Explainer] = field(default_factory=dict)
    _targets: dict[int, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.score not in SCORES:
            raise ValueError(f"unknown score {self.score!r}; choose one of: {', '.join(SCORES)}")

    def explainer(self, name: str) -> Explainer:
        if name not in self._explainers:
            self._explainers[name] = self.build(name)
        return self._explainers[name]

    def forget(self, keep: Sequence[str]) -> None:
        """Free the explainers of candidates no longer in the running."""
        for name in [n for n in self._explainers if n not in keep]:
            del self._explainers[name]

    def target(self, image: int) -> int:
        """The model's top-1 class on the clean image (what every candidate explains)."""
        if image not in self._targets:
            with torch.inference_mode():
                self._targets[image] = int(self.model(self.images[image][None])[0].argmax())
        return self._targets[image]

    def ranker(self, name: str, image: int) -> Ranker:
        """The candidate's map, recording its pixel and negative shares on the way."""
        explainer = self.explainer(name)

        def rank(x: Tensor, target: int) -> Tensor:
            exp = explainer(x[None], target)
            heat = exp.relevance[0].sum(dim=0)
            share = float(exp.ledger.pixel_share()[0])
            self.stats.setdefault(name, {})[image] = MapStats(share, negative_share(heat))
            return heat

        return rank

    def __call__(self, name: str, image: int) -> float:
        """The candidate's score on image ``image`` (higher is better)."""
        return self.curves({name: self.ranker(name, image)}, image, random=False)[name]

    def curves(self, rankers: Mapping[str, Ranker], image: int, *, random: bool) -> dict[str, float]:
        """Scores of several rankers (and, with ``random``, of random orders) on one image."""
        x = self.images[image]
        ident = image if self.image_ids is None else self.image_ids[image]
        kw: dict[str, Any] = dict(low=self.low, high=self.high, image=ident, target=self.target(image))
        morf = evaluate_image(self.model, x, rankers, replace(self.settings, order="morf"), random=random, **kw)
        scores = {name: c.aopc_logit for name, c in morf.curves.items()}
        if self.score == "srg":
            lerf = evaluate_image(self.model, x, rankers, replace(self.settings, order="lerf"), random=random, **kw)
            scores = {name: scores[name] - c.aopc_logit for name, c in lerf.curves.items()}
        return scores
