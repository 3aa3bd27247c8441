"""``evaluation.png``: mean pixel-flipping curves per explainer (MoRF and LeRF panels when both
orders ran), with standard-error bands.

Drawn with matplotlib's object API on the Agg canvas (no pyplot, no global backend state) and
written atomically.
"""

from __future__ import annotations

import io
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lrpcli.evaluation.flipping import OCCLUSION, RANDOM
from lrpcli.io.files import atomic_write

__all__ = ["legend_label", "mean_se_text", "plot_evaluation", "render_evaluation"]

_BASELINE_STYLE: dict[str, dict[str, Any]] = {
    RANDOM: {"color": "0.35", "linestyle": "--"},
    "gradient": {"color": "tab:green", "linestyle": "-."},
    "gradient_x_input": {"color": "tab:olive", "linestyle": ":"},
    OCCLUSION: {"color": "tab:gray", "linestyle": (0, (5, 1, 1, 1))},
}
_LRP_COLOURS = ("tab:red", "tab:blue", "tab:purple", "tab:orange", "tab:brown", "tab:pink", "tab:cyan")


def mean_se_text(stat: Mapping[str, Any], digits: int) -> str:
    """``{"mean": m, "se": s}`` as ``m ± s`` (just ``m`` when there is no standard error)."""
    se = stat.get("se")
    mean = f"{stat['mean']:.{digits}f}"
    return mean if se is None else f"{mean} ± {se:.{digits}f}"


def legend_label(name: str, stats: Mapping[str, Any]) -> str:
    """``name  AOPC logit 2.31 ± 0.40, prob. 0.210 ± 0.030`` (mean ± standard error).

    With both orders: ``name  SRG 1.20 ± 0.30 (MoRF 2.31 ± 0.40, LeRF 1.11 ± 0.20)`` (logit AOPCs).
    """
    if "srg" in stats:
        return (
            f"{name}   SRG {mean_se_text(stats['srg'], 2)} (MoRF {mean_se_text(stats['aopc_logit'], 2)}, "
            f"LeRF {mean_se_text(stats['lerf']['aopc_logit'], 2)})"
        )
    return (
        f"{name}   AOPC logit {mean_se_text(stats['aopc_logit'], 2)}, "
        f"prob. {mean_se_text(stats['aopc_probability'], 3)}"
    )


def _draw(ax: Any, k: np.ndarray, curve: Mapping[str, Any], key: str, style: Mapping[str, Any]) -> Any:
    """One mean curve with its ± 1 SE band; returns the line."""
    mean = np.asarray(curve[key], dtype=float)
    (line,) = ax.plot(k, mean, linewidth=2, **style)
    se = curve.get(f"{key}_se")
    if se is not None:
        se_arr = np.asarray(se, dtype=float)
        ax.fill_between(k, mean - se_arr, mean + se_arr, color=style["color"], alpha=0.15, linewidth=0)
    return line


def render_evaluation(
    summary: Mapping[str, Any], *, title: str, subtitle: str, xlabel: str
) -> bytes:
    """The plot as PNG bytes: logit drop (top or left) and target probability against the step.

    ``summary`` is :func:`lrpcli.evaluation.summary.summarize`'s result; explainers are drawn
    and listed in the legend in ranking order (by mean: a sort, not a claim). With both orders
    (explainers carry ``lerf``), MoRF is the left column and LeRF the right one, logit drop
    above and probability below.
    """
    explainers: Mapping[str, Any] = summary["explainers"]
    names: Sequence[str] = [row["explainer"] for row in summary["ranking"]]
    n_images = max((explainers[n]["images"] for n in names), default=0)
    both = any("lerf" in explainers[n] for n in names)
    # imported here: matplotlib's figure machinery takes ~0.2 s, which every `lrp` start would pay
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(12.5, 10.4 if both else 6.2), dpi=110)
    FigureCanvasAgg(fig)
    if both:
        grid = fig.subplots(2, 2, sharex=True)
        columns = [("MoRF", lambda n: explainers[n]["mean_curve"], grid[0][0], grid[1][0]),
                   ("LeRF", lambda n: explainers[n]["lerf"]["mean_curve"], grid[0][1], grid[1][1])]  # fmt: skip
    else:
        ax_drop, ax_prob = fig.subplots(1, 2)
        columns = [("", lambda n: explainers[n]["mean_curve"], ax_drop, ax_prob)]
    colours = iter(_LRP_COLOURS)
    styles = {n: _BASELINE_STYLE.get(n) or {"color": next(colours, "black"), "linestyle": "-"} for n in names}
    handles = []
    for label, curve_of, ax_drop, ax_prob in columns:
        for name in names:
            curve = curve_of(name)
            k = np.arange(len(curve["logit_drop"]))
            line = _draw(ax_drop, k, curve, "logit_drop", styles[name])
            _draw(ax_prob, k, curve, "probability", styles[name])
            if len(handles) < len(names):
                handles.append((line, legend_label(name, explainers[name])))
        prefix = f"{label}: " if label else ""
        better = {"MoRF": " (falls early = faithful)", "LeRF": " (stays low = faithful)"}.get(label, "")
        ax_drop.set_title(f"{prefix}target logit drop{better}; its mean is the AOPC", fontsize=11)
        ax_drop.set_ylabel("f(x⁰) − f(xᵏ)   (target logit, mean over images)")
        ax_prob.set_title(f"{prefix}target class probability", fontsize=11)
        ax_prob.set_ylabel("softmax probability of the target (mean)")
        ax_prob.set_ylim(-0.02, 1.02)
        for ax in (ax_drop, ax_prob):
            ax.set_xlabel(xlabel)
            ax.grid(True, alpha=0.3)
            ax.margins(x=0)
        ax_drop.axhline(0, color="black", linewidth=0.6)
    band = "shaded: ± 1 standard error over images" if n_images > 1 else "one image: no error band"
    fig.suptitle(title, fontsize=13, fontweight="bold", y=0.985)
    lines = textwrap.wrap(f"{subtitle}; {band}", width=150)
    height = fig.get_figheight()
    fig.text(0.5, 1 - 0.065 * 6.2 / height, "\n".join(lines), ha="center", va="top", fontsize=10, color="0.25")
    fig.legend(
        [h for h, _ in handles],
        [text for _, text in handles],
        loc="lower center",
        ncol=2 if len(handles) > 3 else 1,
        fontsize=9.5,
        frameon=False,
        title="explainer, sorted by mean (a sort, not a ranking: see the paired comparisons); "
        "mean ± standard error over images",
        title_fontsize=9.5,
    )
    rows = (len(handles) + 1) // 2 if len(handles) > 3 else len(handles)
    scale = 6.2 / height
    top = 1 - (0.10 + 0.03 * len(lines)) * scale
    bottom = (0.11 + 0.035 * rows) * scale + 0.07 * (1 - scale) + 0.07 * scale
    fig.subplots_adjust(left=0.07, right=0.98, top=top, bottom=bottom, wspace=0.22, hspace=0.25)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def plot_evaluation(
    summary: Mapping[str, Any], path: Path, *, title: str, subtitle: str, xlabel: str
) -> None:
    """Write :func:`render_evaluation`'s PNG to ``path`` atomically."""
    data = render_evaluation(summary, title=title, subtitle=subtitle, xlabel=xlabel)
    atomic_write(Path(path), lambda handle: handle.write(data))
