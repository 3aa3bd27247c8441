"""lrp tune's scorer: scores, the map statistics it records, and SRG."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from lrpcli.core.engine import Explainer
from lrpcli.evaluation.flipping import FlipSettings, evaluate_image
from lrpcli.tuning.scoring import Scorer, negative_share


def test_negative_share() -> None:
    assert negative_share(torch.tensor([1.0, -3.0])) == pytest.approx(0.75)
    assert negative_share(torch.zeros(3)) == 0.0


def make_scorer(score: str) -> Scorer:
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
        torch.nn.Linear(4, 3),
    ).eval()  # fmt: skip
    images = [torch.randn(3, 12, 12, generator=torch.Generator().manual_seed(i)) for i in range(2)]
    rules = {"eps": "epsilon", "flat": {"preset": "epsilon", "first": "flat"}}
    return Scorer(
        model, lambda name: Explainer(model, rules[name]), images, FlipSettings(patch=3, steps=8, random_runs=2),
        torch.full((1, 3, 1, 1), -3.0), torch.full((1, 3, 1, 1), 3.0), score=score,
    )  # fmt: skip


def test_scores_and_records_map_statistics() -> None:
    scorer = make_scorer("aopc")
    value = scorer("eps", 1)
    assert value == scorer("eps", 1)  # the same seeds: the same score
    stats = scorer.stats["eps"][1]
    assert 0.0 <= stats.negative_share <= 1.0
    # ε = 1e-6 everywhere, ReLU net: nearly all of f(x) minus the biases' shares reaches the pixels
    exp = scorer.explainer("eps")(scorer.images[1][None], scorer.target(1))
    assert stats.pixel_share == pytest.approx(float(exp.ledger.pixel_share()[0]))


def test_srg_is_morf_minus_lerf() -> None:
    aopc, srg = make_scorer("aopc"), make_scorer("srg")
    x = aopc.images[0]
    lerf = evaluate_image(aopc.model, x, {"eps": aopc.ranker("eps", 0)}, replace(aopc.settings, order="lerf"),
                          low=aopc.low, high=aopc.high, random=False, image=0, target=aopc.target(0))  # fmt: skip
    assert srg("eps", 0) == pytest.approx(aopc("eps", 0) - lerf.curves["eps"].aopc_logit)
    assert srg("eps", 0) != pytest.approx(aopc("eps", 0))


def test_unknown_score() -> None:
    with pytest.raises(ValueError, match="choose one of"):
        make_scorer("fast")
