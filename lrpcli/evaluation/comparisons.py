"""Which explainers ``lrp evaluate`` compares, and the paired comparisons over images.

Every explainer is compared with each reference baseline that ran (:data:`REFERENCES`:
random, gradient × input, occlusion), each unordered pair once, and the LRP explainers with
each other; on MoRF AOPC, and on SRG when both orders ran (on LeRF AOPC for ``lerf``). See
:mod:`lrpcli.evaluation.stats` for the interval, the test and the verdict.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from lrpcli.evaluation.flipping import OCCLUSION, RANDOM, ImageResult
from lrpcli.evaluation.stats import RESAMPLES, paired_comparison
from lrpcli.evaluation.summary import METRICS, metrics_for, per_image

__all__ = ["REFERENCES", "compare", "comparison_pairs"]

REFERENCES: tuple[str, ...] = (RANDOM, "gradient_x_input", OCCLUSION)


def comparison_pairs(names: Sequence[str], lrp: Sequence[str]) -> list[tuple[str, str]]:
    """``(explainer, reference)`` pairs: each explainer against each reference run, then LRP pairs."""
    refs = [r for r in REFERENCES if r in names]
    pairs: list[tuple[str, str]] = []
    seen: set[frozenset[str]] = set()
    for a in names:
        for b in refs:
            if a != b and frozenset((a, b)) not in seen:
                seen.add(frozenset((a, b)))
                pairs.append((a, b))
    lrp_run = [n for n in lrp if n in names]
    for i, a in enumerate(lrp_run):
        for b in lrp_run[i + 1 :]:
            if frozenset((a, b)) not in seen:
                seen.add(frozenset((a, b)))
                pairs.append((a, b))
    return pairs


def compare(
    results: Sequence[ImageResult],
    order: str,
    pairs: Sequence[tuple[str, str]],
    *,
    seed: int = 0,
    resamples: int = RESAMPLES,
) -> list[dict[str, Any]]:
    """One record per pair and metric: ``a``, ``b``, ``metric`` and :meth:`Comparison.to_dict`."""
    out: list[dict[str, Any]] = []
    if not results:
        return out
    for metric in metrics_for(order):
        higher, _ = METRICS[metric]
        for a, b in pairs:
            cmp = paired_comparison(
                per_image(results, a, metric),
                per_image(results, b, metric),
                higher_is_better=higher,
                seed=seed,
                resamples=resamples,
            )
            out.append({"a": a, "b": b, "metric": metric, **cmp.to_dict()})
    return out
