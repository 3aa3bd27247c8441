"""``evaluation.png``: mean pixel-flipping curves per explainer, with standard-error bands.

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

from lrpcli.evaluation.flipping import RANDOM
from lrpcli.io.files import atomic_write

__all__ = ["legend_label", "mean_se_text", "plot_evaluation", "render_evaluation"]

_BASELINE_STYLE: dict[str, dict[str, Any]] = {
    RANDOM: {"color": "0.35", "linestyle": "--"},
    "gradient": {"color": "tab:green", "linestyle": "-."},
    "gradient_x_input": {"color": "tab:olive", "linestyle": ":"},
}
_LRP_COLOURS = ("tab:red", "tab:blue", "tab:purple", "tab:orange", "tab:brown", "tab:pink", "tab:cyan")


def mean_se_text(stat: Mapping[str, Any], digits: int) -> str:
    """``{"mean": m, "se": s}`` as ``m ± s`` (just ``m`` when there is no standard error)."""
    se = stat.get("se")
    mean = f"{stat['mean']:.{digits}f}"
    return mean if se is None else f"{mean} ± {se:.{digits}f}"


def legend_label(name: str, stats: Mapping[str, Any]) -> str:
    """``name  AOPC logit 2.31 ± 0.40, prob. 0.210 ± 0.030`` (mean ± standard error)."""
    return (
        f"{name}   AOPC logit {mean_se_text(stats['aopc_logit'], 2)}, "
        f"prob. {mean_se_text(stats['aopc_probability'], 3)}"
    )


def render_evaluation(
    summary: Mapping[str, Any], *, title: str, subtitle: str, xlabel: str
) -> bytes:
    """The plot as PNG bytes: logit drop (left) and target probability (right) against the step.

    ``summary`` is :func:`lrpcli.evaluate.summarize`'s result; explainers are drawn and listed in
    the legend in ranking order.
    """
    explainers: Mapping[str, Any] = summary["explainers"]
    names: Sequence[str] = [row["explainer"] for row in summary["ranking"]]
    n_images = max((explainers[n]["images"] for n in names), default=0)
    # imported here: matplotlib's figure machinery takes ~0.2 s, which every `lrp` start would pay
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(12.5, 6.2), dpi=110)
    FigureCanvasAgg(fig)
    ax_drop, ax_prob = fig.subplots(1, 2)
    colours = iter(_LRP_COLOURS)
    handles = []
    for name in names:
        style = _BASELINE_STYLE.get(name) or {"color": next(colours, "black"), "linestyle": "-"}
        curve = explainers[name]["mean_curve"]
        k = np.arange(len(curve["logit_drop"]))
        for ax, key in ((ax_drop, "logit_drop"), (ax_prob, "probability")):
            mean = np.asarray(curve[key], dtype=float)
            (line,) = ax.plot(k, mean, linewidth=2, **style)
            se = curve.get(f"{key}_se")
            if se is not None:
                se_arr = np.asarray(se, dtype=float)
                ax.fill_between(k, mean - se_arr, mean + se_arr, color=style["color"], alpha=0.15, linewidth=0)
            if ax is ax_drop:
                handles.append((line, legend_label(name, explainers[name])))
    band = "shaded: ± 1 standard error over images" if n_images > 1 else "one image: no error band"
    ax_drop.set_title("Target logit drop (its mean over steps is the AOPC)", fontsize=11)
    ax_drop.set_ylabel("f(x⁰) − f(xᵏ)   (target logit, mean over images)")
    ax_prob.set_title("Target class probability", fontsize=11)
    ax_prob.set_ylabel("softmax probability of the target (mean over images)")
    ax_prob.set_ylim(-0.02, 1.02)
    for ax in (ax_drop, ax_prob):
        ax.set_xlabel(xlabel)
        ax.grid(True, alpha=0.3)
        ax.margins(x=0)
    ax_drop.axhline(0, color="black", linewidth=0.6)
    fig.suptitle(title, fontsize=13, fontweight="bold", y=0.985)
    lines = textwrap.wrap(f"{subtitle}; {band}", width=150)
    fig.text(0.5, 0.935, "\n".join(lines), ha="center", va="top", fontsize=10, color="0.25")
    fig.legend(
        [h for h, _ in handles],
        [label for _, label in handles],
        loc="lower center",
        ncol=2 if len(handles) > 3 else 1,
        fontsize=9.5,
        frameon=False,
        title="explainer (ranked), AOPC mean ± standard error over images",
        title_fontsize=9.5,
    )
    rows = (len(handles) + 1) // 2 if len(handles) > 3 else len(handles)
    top = 0.90 - 0.03 * len(lines)
    fig.subplots_adjust(left=0.07, right=0.98, top=top, bottom=0.18 + 0.035 * rows, wspace=0.22)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def plot_evaluation(
    summary: Mapping[str, Any], path: Path, *, title: str, subtitle: str, xlabel: str
) -> None:
    """Write :func:`render_evaluation`'s PNG to ``path`` atomically."""
    data = render_evaluation(summary, title=title, subtitle=subtitle, xlabel=xlabel)
    atomic_write(Path(path), lambda handle: handle.write(data))
