"""Tests for lrpcli.evaluation.comparisons: which pairs are compared, on which metrics."""

from __future__ import annotations

import pytest

from lrpcli.evaluation.comparisons import compare, comparison_pairs
from lrpcli.evaluation.flipping import Curve, ImageResult


def test_pairs_against_each_reference_once_and_lrp_among_themselves() -> None:
    names = ["eps", "flat", "gradient", "gradient_x_input", "occlusion", "random"]
    pairs = comparison_pairs(names, ["eps", "flat"])
    assert pairs == [
        ("eps", "random"), ("eps", "gradient_x_input"), ("eps", "occlusion"),
        ("flat", "random"), ("flat", "gradient_x_input"), ("flat", "occlusion"),
        ("gradient", "random"), ("gradient", "gradient_x_input"), ("gradient", "occlusion"),
        ("gradient_x_input", "random"), ("gradient_x_input", "occlusion"), ("occlusion", "random"),
        ("eps", "flat"),
    ]  # fmt: skip
    assert comparison_pairs(["eps"], ["eps"]) == []


def test_compare_records_morf_and_srg_with_the_right_direction() -> None:
    results = []
    for i in range(6):
        r = ImageResult(0, 1.0, 0.5, order="both")
        r.curves = {"eps": Curve([1, 0], [1, 0], 2.0 + i, 0), "random": Curve([1, 0], [1, 0], 1.0 + i, 0)}
        r.lerf_curves = {"eps": Curve([1, 0], [1, 0], 0.5, 0), "random": Curve([1, 0], [1, 0], 1.0 + i, 0)}
        results.append(r)
    rows = compare(results, "both", [("eps", "random")], resamples=500)
    assert [(c["metric"], c["a"], c["b"]) for c in rows] == [("aopc_morf", "eps", "random"), ("srg", "eps", "random")]
    assert rows[0]["mean_diff"] == pytest.approx(1.0) and rows[0]["verdict"] == "better"
    assert rows[1]["mean_diff"] == pytest.approx(1.0 + 3.0) and rows[1]["images"] == 6
    for r in results:
        r.order, r.curves, r.lerf_curves = "lerf", r.lerf_curves, None
    (lerf,) = compare(results, "lerf", [("eps", "random")], resamples=500)
    assert lerf["metric"] == "aopc_lerf" and lerf["higher_is_better"] is False and lerf["verdict"] == "better"
    assert compare([], "both", [("eps", "random")]) == []
