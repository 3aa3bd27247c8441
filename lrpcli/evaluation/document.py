"""``evaluation.json``: the document ``lrp evaluate`` writes (schema :data:`SCHEMA_VERSION`), and
the titles of its plot.

Layout: ``run`` (versions, model, config, explainers, settings, grid, metric), ``summary``
(counts, the ranking, every explainer's statistics, the paired ``comparisons`` and, with
``--sanity``, the model-randomisation ``sanity`` check), ``images`` (one entry per input with
its curves per order, SRG and sanity correlations). The maths is in
:mod:`lrpcli.evaluation.flipping`, :mod:`.summary`, :mod:`.stats` and :mod:`.sanity`, the
picture in :mod:`lrpcli.evaluation.plot`.

Schema 2 (from 1): ``--order both`` is the default; per image, ``explainers[name]`` holds the
first order's curve as before (MoRF for ``morf`` and ``both``) plus ``lerf`` and ``srg`` with
``both``; ``summary.ranking[].rank`` is shared by explainers not distinguishable by a paired
95 % bootstrap interval (it was the position); ``summary.comparisons`` and
``summary.sanity`` are new.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from lrpcli.config import Config
from lrpcli.evaluation.flipping import ORDERS, PERTURBATIONS, FlipSettings, PatchGrid
from lrpcli.evaluation.stats import EXACT_MAX, MIN_IMAGES, RESAMPLES
from lrpcli.evaluation.summary import METRICS
from lrpcli.models.sources import describe
from lrpcli.models.spec import LoadedModel
from lrpcli.run.entries import config_digest, now, run_header

__all__ = [
    "EVALUATION_JSON",
    "EVALUATION_KIND",
    "EVALUATION_PNG",
    "ORDER_NAMES",
    "SCHEMA_VERSION",
    "evaluation_document",
    "plot_labels",
]

EVALUATION_JSON = "evaluation.json"
EVALUATION_PNG = "evaluation.png"
EVALUATION_KIND = "lrpcli.evaluation"
ORDER_NAMES: dict[str, str] = {"morf": "MoRF", "lerf": "LeRF", "both": "MoRF and LeRF"}
SCHEMA_VERSION = 2
"""Bumped when a field of ``evaluation.json`` changes meaning or disappears."""



def evaluation_document(
    *,
    cfg: Config,
    loaded: LoadedModel,
    device: torch.device,
    out: Path,
    settings: FlipSettings,
    grid: PatchGrid,
    described: list[dict[str, str]],
    started_at: str,
    duration: float,
    entries: list[dict[str, Any]],
    summary: dict[str, Any],
    inputs: int,
    evaluated: int,
    exit_code: int,
    comparisons: list[dict[str, Any]] | None = None,
    sanity: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The whole ``evaluation.json`` document (plain data; :func:`lrpcli.run.report.json_safe` it)."""
    failures = [{"input": e["input"], "error": e["error"]} for e in entries if e["status"] != "ok"]
    return {
        "schema_version": SCHEMA_VERSION,
        "kind": EVALUATION_KIND,
        "run": _run_info(cfg, loaded, device, out, settings, grid, described, started_at, duration),
        "summary": {
            "inputs": inputs,
            "evaluated": evaluated,
            "failed": len(failures),
            "failures": failures,
            "ranked_by": f"mean {summary['ranked_by']} over images: {METRICS[summary['ranked_by']][1]}; "
            "rank = 1 + the number of explainers better with a paired 95% bootstrap CI excluding 0",
            "ranking": summary["ranking"],
            "explainers": summary["explainers"],
            "comparisons": comparisons or [],
            "sanity": sanity,
            "plot": EVALUATION_PNG if evaluated else None,
            "exit_code": exit_code,
        },
        "images": entries,
    }


def plot_labels(loaded: LoadedModel, s: FlipSettings, grid: PatchGrid, images: int) -> dict[str, str]:
    """The title, subtitle and x-axis label of ``evaluation.png``, stating the settings."""
    title = f"Pixel flipping ({ORDER_NAMES[s.order]}): {describe(loaded.spec)}, {images} image(s)"
    subtitle = (
        f"{s.patch}x{s.patch} px patches of the {grid.height}x{grid.width} crop, one more per step; "
        f"{s.perturbation}: {PERTURBATIONS[s.perturbation]}; random: mean of {s.random_runs} orders"
    )
    area = min(1.0, s.steps * s.patch * s.patch / (grid.height * grid.width))
    first = "in each panel's order" if s.order == "both" else ORDERS[s.order].split(":")[0]
    xlabel = f"k: patches perturbed, {first} (k = {s.steps} ≈ {area:.0%} of the crop)"
    return {"title": title, "subtitle": subtitle, "xlabel": xlabel}


def _run_info(
    cfg: Config,
    loaded: LoadedModel,
    device: torch.device,
    out: Path,
    s: FlipSettings,
    grid: PatchGrid,
    described: list[dict[str, str]],
    started_at: str,
    duration: float,
) -> dict[str, Any]:
    """``evaluation.json``'s ``run``: versions, model, config, explainers, settings, grid, metric."""
    resolved = cfg.to_dict()
    return {
        **run_header(cfg, loaded, device, started_at=started_at, finished_at=now(), duration_s=duration),
        "rule_options": resolved["rule_options"],
        "config": config_digest(cfg),
        "explainers": described,
        "settings": {
            "patch": s.patch,
            "steps": s.steps,
            "perturbation": s.perturbation,
            "perturbation_description": PERTURBATIONS[s.perturbation],
            "perturbation_space": "pixels in [0, 1], before normalisation",
            "order": s.order,
            "order_description": ORDERS[s.order],
            "random_runs": s.random_runs,
            "seed": s.seed,
            "batch_size": s.batch_size,
            "target": "top-1 class on the clean image",
        },
        "statistics": {
            "interval": "percentile bootstrap of the mean paired difference over images",
            "level": 0.95,
            "resamples": RESAMPLES,
            "seed": s.seed,
            "test": f"two-sided Wilcoxon signed-rank (exact up to {EXACT_MAX} nonzero differences "
            "without ties, else normal approximation with tie correction; zeros dropped)",
            "verdict": f"better/worse when the interval excludes 0 and there are at least {MIN_IMAGES} images",
        },
        "grid": {
            "height": grid.height,
            "width": grid.width,
            "rows": grid.rows,
            "cols": grid.cols,
            "patches": grid.count,
        },
        "metric": "AOPC = 1/(L+1) * sum_{k=0..L} (f(x^0) - f(x^k)); f = target logit (aopc_logit) "
        "or its softmax probability (aopc_probability); x^k has k patches perturbed; "
        "SRG = AOPC_MoRF - AOPC_LeRF (logit; order both, LeRF = the reversed MoRF order)",
        "out_dir": out.as_posix(),
    }
