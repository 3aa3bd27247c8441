"""Statistics over images: mean AOPC (and SRG) ± standard error, mean curves, and the ranking.

The per-image scores (:data:`METRICS`) are the logit AOPC of MoRF (larger is better), of LeRF
(smaller is better) and SRG = AOPC_MoRF − AOPC_LeRF (larger is better; order ``both``). The
ranking sorts by the run's main metric (:func:`rank_metric`) and claims only what the paired
comparisons support: an explainer's rank is 1 + the number of explainers that beat it with a
95 % paired bootstrap interval excluding zero, so indistinguishable explainers share a rank.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from lrpcli.evaluation.flipping import Curve, ImageResult
from lrpcli.evaluation.stats import RESAMPLES, paired_comparison

__all__ = ["METRICS", "metrics_for", "per_image", "rank_metric", "summarize"]

METRICS: dict[str, tuple[bool, str]] = {
    "aopc_morf": (True, "MoRF AOPC (logit), larger is better"),
    "aopc_lerf": (False, "LeRF AOPC (logit), smaller is better"),
    "srg": (True, "SRG = AOPC_MoRF − AOPC_LeRF (logit), larger is better"),
}
"""Metric name → (higher is better, description)."""


def metrics_for(order: str) -> list[str]:
    """The metrics an order yields: ``morf`` MoRF AOPC, ``lerf`` LeRF AOPC, ``both`` MoRF AOPC and SRG."""
    return {"morf": ["aopc_morf"], "lerf": ["aopc_lerf"], "both": ["aopc_morf", "srg"]}[order]


def rank_metric(order: str) -> str:
    """The metric the ranking follows: SRG for ``both``, else the order's AOPC."""
    return "srg" if order == "both" else metrics_for(order)[0]


def per_image(results: Sequence[ImageResult], name: str, metric: str) -> list[float]:
    """``name``'s score ``metric`` on each image."""
    if metric == "srg":
        return [r.srg()[name] for r in results]
    order = "morf" if metric == "aopc_morf" else "lerf"
    return [r.by_order()[order][name].aopc_logit for r in results]


def _mean_se(values: Tensor) -> tuple[Tensor, Tensor | None]:
    """Mean over dim 0 and its standard error (sample std / sqrt(n); None for n < 2)."""
    n = values.shape[0]
    mean = values.mean(dim=0)
    if n < 2:
        return mean, None
    return mean, values.std(dim=0, correction=1) / math.sqrt(n)


def _stat(values: Sequence[float]) -> dict[str, float | None]:
    mean, se = _mean_se(torch.tensor(list(values), dtype=torch.float64))
    return {"mean": float(mean), "se": None if se is None else float(se)}


def _curve_stats(curves: Sequence[Curve]) -> dict[str, Any]:
    """AOPC (logit, probability) mean ± SE and the mean curves of one explainer in one order."""
    logits = torch.tensor([c.logits for c in curves], dtype=torch.float64)
    probs = torch.tensor([c.probabilities for c in curves], dtype=torch.float64)
    drop, drop_se = _mean_se(logits[:, :1] - logits)
    prob, prob_se = _mean_se(probs)
    return {
        "aopc_logit": _stat([c.aopc_logit for c in curves]),
        "aopc_probability": _stat([c.aopc_probability for c in curves]),
        "mean_curve": {
            "logit_drop": drop.tolist(),
            "logit_drop_se": None if drop_se is None else drop_se.tolist(),
            "probability": prob.tolist(),
            "probability_se": None if prob_se is None else prob_se.tolist(),
        },
    }


def summarize(
    results: Sequence[ImageResult], order: str, *, seed: int = 0, resamples: int = RESAMPLES
) -> dict[str, Any]:
    """Per explainer: statistics over images; and the ranking by :func:`rank_metric`.

    ``explainers[name]`` holds ``images``, the first order's ``aopc_logit``,
    ``aopc_probability`` and ``mean_curve`` (MoRF for ``morf`` and ``both``), and with ``both``
    also ``lerf`` (the same three for LeRF) and ``srg`` (mean ± SE).
    """
    metric = rank_metric(order)
    if not results:
        return {"explainers": {}, "ranking": [], "ranked_by": metric}
    explainers: dict[str, Any] = {}
    for name in results[0].curves:
        explainers[name] = {"images": len(results), **_curve_stats([r.curves[name] for r in results])}
        if order == "both":
            explainers[name]["lerf"] = _curve_stats([r.by_order()["lerf"][name] for r in results])
            explainers[name]["srg"] = _stat(per_image(results, name, "srg"))
    higher, _ = METRICS[metric]
    scores = {name: per_image(results, name, metric) for name in explainers}
    means = {name: sum(v) / len(v) for name, v in scores.items()}
    ranked = sorted(explainers, key=lambda n: means[n], reverse=higher)
    ranking = []
    for name in ranked:
        beaten_by = [
            other
            for other in ranked
            if other != name
            and paired_comparison(
                scores[other], scores[name], higher_is_better=higher, seed=seed, resamples=resamples
            ).verdict
            == "better"
        ]
        row: dict[str, Any] = {
            "rank": 1 + len(beaten_by),
            "explainer": name,
            "metric": metric,
            "mean": means[name],
            "se": _stat(scores[name])["se"],
            "aopc_logit_mean": explainers[name]["aopc_logit"]["mean"],
            "aopc_logit_se": explainers[name]["aopc_logit"]["se"],
            "distinguishably_worse_than": beaten_by,
        }
        ranking.append(row)
    return {"explainers": explainers, "ranking": ranking, "ranked_by": metric}
