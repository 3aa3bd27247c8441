"""tune.png: every candidate's search score by the round it reached, and the held-out check."""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from lrpcli.io.files import atomic_write

_ROUND_COLOURS = ("#c6dbef", "#9ecae1", "#6baed6", "#3182bd", "#08519c", "#08306b")


def render_tune(
    rows: Sequence[Mapping[str, Any]], held_out: Mapping[str, Mapping[str, Any]], *, title: str, score: str
) -> bytes:
    """PNG bytes. ``rows``: one per candidate (``name``, ``mean``, ``images``, ``round``), best
    first; ``held_out``: explainer → ``{"mean", "se"}`` on the held-out images, the winner first."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    shown = list(rows)[:40]
    height = 2.2 + 0.22 * len(shown)
    fig = Figure(figsize=(13, max(4.5, height)), dpi=100)
    FigureCanvasAgg(fig)
    ax, ax_held = fig.subplots(1, 2, gridspec_kw={"width_ratios": [3, 1.2]})
    y = list(range(len(shown)))[::-1]
    colours = [_ROUND_COLOURS[min(int(r["round"]), len(_ROUND_COLOURS) - 1)] for r in shown]
    ax.barh(y, [r["mean"] for r in shown], color=colours, edgecolor="0.3", linewidth=0.4)
    ax.set_yticks(y)
    ax.set_yticklabels([f"{r['name']}  ({r['images']} img)" for r in shown], fontsize=7.5)
    ax.set_xlabel(f"{score} on the search images (mean; darker: survived more rounds)")
    ax.set_title(f"candidates, best first (top {len(shown)} of {len(rows)})", fontsize=10)
    ax.grid(True, axis="x", alpha=0.3)
    ax.axvline(0, color="black", linewidth=0.6)
    names = list(held_out)
    labels = ["winner" if k == 0 else n.replace("_", " ") for k, n in enumerate(names)]
    means = [held_out[n]["mean"] for n in names]
    errors = [held_out[n].get("se") or 0.0 for n in names]
    ax_held.bar(range(len(names)), means, yerr=errors, capsize=4, color=["#08519c", "#fd8d3c", "#969696"][: len(names)])
    ax_held.set_xticks(range(len(names)))
    ax_held.set_xticklabels(labels, fontsize=9)
    ax_held.set_title(f"held out: {names[0]}" if names else "held out", fontsize=8.5, wrap=True)
    ax_held.set_xlabel("mean ± standard error over the held-out images", fontsize=8.5)
    ax_held.set_ylabel(score)
    ax_held.grid(True, axis="y", alpha=0.3)
    fig.suptitle(title, fontsize=12, fontweight="bold")
    fig.subplots_adjust(left=0.30, right=0.98, top=0.92 - 0.3 / height, bottom=0.12, wspace=0.35)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def plot_tune(
    rows: Sequence[Mapping[str, Any]], held_out: Mapping[str, Mapping[str, Any]], path: Path, *, title: str, score: str
) -> None:
    """Write :func:`render_tune`'s PNG to ``path`` atomically."""
    data = render_tune(rows, held_out, title=title, score=score)
    atomic_write(Path(path), lambda handle: handle.write(data))
