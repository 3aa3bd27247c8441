"""Tests for lrpcli.evaluation.tables: what the tables on standard error claim."""

from __future__ import annotations

from rich.console import Console

from lrpcli.evaluation.tables import comparisons_table, ranking_table, sanity_table


def text(table: object) -> str:
    console = Console(width=200, record=True, file=open("/dev/null", "w"))  # noqa: SIM115
    console.print(table)
    return console.export_text()


def test_comparisons_say_not_distinguishable_unless_the_interval_excludes_zero() -> None:
    rows = [
        {"metric": "srg", "a": "eps", "b": "random", "mean_diff": 1.5, "ci_low": 0.5, "ci_high": 2.5,
         "wilcoxon_p": 0.01, "verdict": "better"},
        {"metric": "aopc_morf", "a": "eps", "b": "occlusion", "mean_diff": -0.2, "ci_low": -0.9, "ci_high": 0.4,
         "wilcoxon_p": 0.6, "verdict": "not distinguishable"},
    ]  # fmt: skip
    out = text(comparisons_table(rows))
    assert "a better than b" in out and "not distinguishable" in out
    assert "[+0.500, +2.500]" in out and "SRG" in out and "MoRF AOPC" in out and "0.01" in out


def test_ranking_shows_shared_ranks_and_both_orders() -> None:
    stat = {"mean": 1.0, "se": 0.1}
    explainer = {
        "aopc_logit": stat, "aopc_probability": stat, "srg": {"mean": 2.0, "se": 0.2}, "lerf": {"aopc_logit": stat}
    }  # fmt: skip
    summary = {
        "ranked_by": "srg",
        "explainers": {"eps": explainer, "random": explainer},
        "ranking": [{"rank": 1, "explainer": "eps"}, {"rank": 1, "explainer": "random"}],
    }
    out = text(ranking_table(summary, "both", 3))
    assert "SRG (logit)" in out and "LeRF AOPC (logit)" in out and "2.000 ± 0.200" in out
    rows = [line for line in out.splitlines() if "│ eps" in line or "│ random" in line]
    assert [line.split("│")[1].strip() for line in rows] == ["1", "1"]  # a shared rank


def test_sanity_table_lists_levels() -> None:
    sanity = {
        "levels": [{"name": "top 1"}, {"name": "all"}],
        "explainers": {"eps": {"top 1": {"mean": 0.9, "se": 0.01}, "all": {"mean": None, "se": None}}},
    }
    out = text(sanity_table(sanity))
    assert "top 1" in out and "0.900 ± 0.010" in out and "undefined" in out
