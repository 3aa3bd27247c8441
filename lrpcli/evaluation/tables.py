"""The Rich tables ``lrp evaluate`` prints on standard error: ranking, paired comparisons, sanity."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from rich.table import Table

from lrpcli.evaluation.plot import mean_se_text
from lrpcli.evaluation.summary import METRICS

__all__ = ["comparisons_table", "ranking_table", "sanity_table"]

_METRIC_SHORT = {"aopc_morf": "MoRF AOPC", "aopc_lerf": "LeRF AOPC", "srg": "SRG"}


def ranking_table(summary: Mapping[str, Any], order: str, images: int) -> Table:
    """The ranking: shared ranks where paired CIs cannot tell explainers apart; AOPC (and SRG)."""
    metric = summary["ranked_by"]
    table = Table(
        title=f"pixel flipping, ranked by {METRICS[metric][1]} ({images} image(s); mean ± standard "
        "error; equal rank = not distinguishable by a paired 95% bootstrap CI)",
        header_style="bold",
    )
    both = order == "both"
    table.add_column("rank", justify="right")
    table.add_column("explainer")
    if both:
        table.add_column("SRG (logit)", justify="right")
    first = "MoRF AOPC" if order in ("morf", "both") else "LeRF AOPC"
    table.add_column(f"{first} (logit)", justify="right")
    if both:
        table.add_column("LeRF AOPC (logit)", justify="right")
    table.add_column(f"{first} (probability)", justify="right")
    for row in summary["ranking"]:
        stats = summary["explainers"][row["explainer"]]
        cells = [str(row["rank"]), row["explainer"]]
        if both:
            cells.append(mean_se_text(stats["srg"], 3))
        cells.append(mean_se_text(stats["aopc_logit"], 3))
        if both:
            cells.append(mean_se_text(stats["lerf"]["aopc_logit"], 3))
        cells.append(mean_se_text(stats["aopc_probability"], 4))
        table.add_row(*cells)
    return table


def comparisons_table(comparisons: Sequence[Mapping[str, Any]]) -> Table:
    """One row per pair and metric: mean difference, 95 % CI, Wilcoxon p and the verdict."""
    table = Table(
        title="paired comparisons over images (a − b; verdict from the bootstrap CI: it must exclude 0)",
        header_style="bold",
    )
    for name, justify in (("metric", "left"), ("a", "left"), ("b", "left"), ("mean a − b", "right"),
                          ("95% CI", "right"), ("Wilcoxon p", "right"), ("verdict", "left")):  # fmt: skip
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for c in comparisons:
        verdict = c["verdict"] if c["verdict"] == "not distinguishable" else f"a {c['verdict']} than b"
        table.add_row(
            _METRIC_SHORT[c["metric"]], c["a"], c["b"], f"{c['mean_diff']:+.3f}",
            f"[{c['ci_low']:+.3f}, {c['ci_high']:+.3f}]", f"{c['wilcoxon_p']:.3g}", verdict,
        )  # fmt: skip
    return table


def sanity_table(sanity: Mapping[str, Any]) -> Table:
    """Spearman ρ (original vs randomised map) per LRP explainer and level, mean ± SE."""
    levels = [level["name"] for level in sanity["levels"]]
    table = Table(
        title="model-randomisation sanity check: Spearman ρ of the map with the map of a model whose "
        "top layers are re-initialised (mean ± SE; near 1 = the map ignores those weights)",
        header_style="bold",
    )
    table.add_column("explainer")
    for level in levels:
        table.add_column(level, justify="right")
    for name, by_level in sanity["explainers"].items():
        cells = [name]
        for level in levels:
            stat = by_level[level]
            cells.append("undefined" if stat["mean"] is None else mean_se_text(stat, 3))
        table.add_row(*cells)
    return table
