"""Tests for lrpcli.evaluation.summary: SRG statistics and a ranking that claims only what it can."""

from __future__ import annotations

import pytest

from lrpcli.evaluation.flipping import Curve, ImageResult
from lrpcli.evaluation.summary import metrics_for, per_image, rank_metric, summarize


def result(morf: dict[str, float], lerf: dict[str, float]) -> ImageResult:
    r = ImageResult(target=0, logit=1.0, probability=0.5, order="both")
    r.curves = {n: Curve([1.0, 1.0 - a], [0.5, 0.4], a, 0.1) for n, a in morf.items()}
    r.lerf_curves = {n: Curve([1.0, 1.0 - a], [0.5, 0.45], a, 0.05) for n, a in lerf.items()}
    return r


def test_both_orders_rank_by_srg_and_equal_ranks_when_not_distinguishable() -> None:
    # SRG per image: a always 2.5 above c; b − c crosses zero
    results = [
        result({"a": 4, "b": 2.5, "c": 1}, {"a": 1, "b": 1, "c": 0.5}),
        result({"a": 5, "b": 1.0, "c": 2}, {"a": 1, "b": 1, "c": 0.5}),
        result({"a": 6, "b": 4.5, "c": 3}, {"a": 1, "b": 1, "c": 0.5}),
        result({"a": 7, "b": 2.0, "c": 4}, {"a": 1, "b": 1, "c": 0.5}),
    ]
    results += results[1:3]  # six images: enough for a verdict
    assert per_image(results, "a", "srg") == [3, 4, 5, 6, 4, 5]
    assert per_image(results, "b", "aopc_lerf") == [1] * 6
    s = summarize(results, "both", resamples=2000)
    assert s["ranked_by"] == "srg"
    a = s["explainers"]["a"]
    assert a["srg"]["mean"] == pytest.approx(4.5) and a["lerf"]["aopc_logit"]["mean"] == pytest.approx(1.0)
    assert a["aopc_logit"]["mean"] == pytest.approx(5.5)  # 4, 5, 6, 7, 5, 6  # the top level stays MoRF
    rows = {row["explainer"]: row for row in s["ranking"]}
    assert [row["explainer"] for row in s["ranking"]] == ["a", "c", "b"]  # means 4.5, 2, 1.5 + 1/6
    assert rows["a"]["rank"] == 1 and rows["a"]["mean"] == pytest.approx(4.5)
    # c (SRG 0.5, 1.5, 2.5, 3.5, 1.5, 2.5) vs b (1.5, 0, 3.5, 1, 0, 3.5): differences cross 0: one rank
    assert rows["b"]["rank"] == rows["c"]["rank"] == 2
    assert rows["b"]["distinguishably_worse_than"] == ["a"] and rows["c"]["distinguishably_worse_than"] == ["a"]


def test_metrics_of_each_order() -> None:
    assert metrics_for("morf") == ["aopc_morf"] and metrics_for("lerf") == ["aopc_lerf"]
    assert metrics_for("both") == ["aopc_morf", "srg"]
    assert [rank_metric(o) for o in ("morf", "lerf", "both")] == ["aopc_morf", "aopc_lerf", "srg"]
    assert summarize([], "both") == {"explainers": {}, "ranking": [], "ranked_by": "srg"}


def test_too_few_images_share_one_rank() -> None:
    results = [result({"a": 9 + i, "b": 1}, {"a": 0, "b": 1}) for i in range(3)]
    assert [row["rank"] for row in summarize(results, "both", resamples=500)["ranking"]] == [1, 1]
