"""The run behind ``lrp evaluate``: pixel-flipping curves and AOPC for LRP composites and baselines.

Config, model, device and inputs are handled by the same helpers as ``lrp explain``; images
are decoded and preprocessed by :mod:`lrpcli.images`; the maths is in :mod:`lrpcli.evaluate`,
the plot in :mod:`lrpcli.evaluate_plot`. Writes ``evaluation.json`` and ``evaluation.png``
into ``--out``; the ranking table goes to standard error, ``--json`` prints the document on
standard output.
"""

from __future__ import annotations

import difflib
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.table import Table
from rich.text import Text

from lrpcli import PRESETS
from lrpcli.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    DeviceChoice,
    _discover_inputs,
    _error,
    _Fail,
    _input_paths,
    _load_config,
    _load_model,
    _make_explainer,
    _now,
    _resolve_device,
    config_digest,
    run_header,
)
from lrpcli.config import Config
from lrpcli.evaluate import (
    BASELINES,
    ORDERS,
    PERTURBATIONS,
    RANDOM,
    FlipSettings,
    ImageResult,
    PatchGrid,
    Ranker,
    baseline_ranker,
    evaluate_image,
    lrp_ranker,
    summarize,
)
from lrpcli.evaluate_plot import mean_se_text, plot_evaluation
from lrpcli.images import (
    ImageInput,
    ImageLoadError,
    load_image,
    pixel_bounds,
    preprocess,
)
from lrpcli.models.registry import LoadedModel
from lrpcli.render import atomic_write
from lrpcli.report import json_safe, pretty_json

__all__ = [
    "EVALUATION_JSON",
    "EVALUATION_KIND",
    "EVALUATION_PNG",
    "SCHEMA_VERSION",
    "parse_names",
    "run_evaluate",
]

EVALUATION_JSON = "evaluation.json"
EVALUATION_PNG = "evaluation.png"
EVALUATION_KIND = "lrpcli.evaluation"
_ORDER_NAMES = {"morf": "MoRF", "lerf": "LeRF"}
SCHEMA_VERSION = 1
"""Bumped when a field of ``evaluation.json`` changes meaning or disappears."""


def parse_names(text: str | None, valid: Sequence[str], option: str) -> list[str]:
    """A comma-separated list of names from ``valid`` (order kept, repeats dropped).

    An unknown name is a usage error that suggests the closest name and lists the valid ones.
    """
    names: list[str] = []
    for raw in (text or "").split(","):
        name = raw.strip()
        if not name or name in names:
            continue
        if name not in valid:
            close = difflib.get_close_matches(name, list(valid), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise _Fail(EXIT_USAGE, f"{option} {name!r}: unknown name{hint}; choose from: {', '.join(valid)}")
        names.append(name)
    return names


def _outputs(out: Path, inputs: list[ImageInput], named: list[str], overwrite: bool) -> list[ImageInput]:
    """Check the two output files; drop an earlier ``evaluation.png`` found while scanning."""
    targets = {os.path.realpath(out / name) for name in (EVALUATION_JSON, EVALUATION_PNG)}
    explicit = {os.path.realpath(p) for p in named}
    clash = targets & explicit
    if clash:
        first = sorted(clash)[0]
        raise _Fail(EXIT_USAGE, f"--out {out}: writing the evaluation would replace the input {first}")
    for name in (EVALUATION_JSON, EVALUATION_PNG):
        path = out / name
        if (path.exists() or path.is_symlink()) and not overwrite:
            raise _Fail(
                EXIT_USAGE, f"{path} already exists; use --overwrite to replace it or choose another --out"
            )
        if path.is_symlink() or path.is_dir():
            raise _Fail(EXIT_USAGE, f"{path} is a symbolic link or a folder; refusing to write through it")
    return [item for item in inputs if os.path.realpath(item.path) not in targets]


def _rankers(
    loaded: LoadedModel, cfg: Config, composites: list[str], baselines: list[str]
) -> tuple[dict[str, Ranker], list[dict[str, str]]]:
    """A relevance-map function per composite and map baseline, and every explainer described."""
    rankers: dict[str, Ranker] = {}
    described: list[dict[str, str]] = []
    for name in composites:
        rules = cfg.rules if name == cfg.composite_name and not isinstance(cfg.rules, str) else name
        explainer = _make_explainer(loaded, cfg, rules)
        rankers[name] = lrp_ranker(explainer)
        text = PRESETS.get(name, "the config's rules")
        description = f"LRP, {text}; relevance summed over channels"
        described.append({"name": name, "kind": "lrp", "description": description})
    for name in sorted(baselines, key=lambda n: n == RANDOM):  # evaluate_image adds random last
        if name != RANDOM:
            rankers[name] = baseline_ranker(name, loaded.module)
        described.append({"name": name, "kind": "baseline", "description": BASELINES[name]})
    return rankers, described


def run_evaluate(
    console: Console,
    *,
    paths: list[str],
    config: str | None,
    composites: str | None,
    baselines: str,
    steps: int,
    patch: int,
    perturbation: str,
    order: str,
    random_runs: int,
    seed: int,
    batch_size: int,
    device: DeviceChoice,
    out: Path,
    json_out: bool,
    quiet: bool,
    overwrite: bool,
) -> int:
    """Run ``lrp evaluate``; returns the exit code (usage and model errors raise ``_Fail``)."""
    started_at, started = _now(), time.perf_counter()
    cfg = _load_config(config, {})
    if composites is None:
        composite_names = [cfg.composite_name]
    else:
        composite_names = parse_names(composites, list(PRESETS), "--composites")
    baseline_names = parse_names(baselines, list(BASELINES), "--baselines")
    if not composite_names and not baseline_names:
        raise _Fail(EXIT_USAGE, "nothing to evaluate: --composites and --baselines are both empty")
    settings = FlipSettings(patch, steps, perturbation, order, random_runs, seed, batch_size)
    grid = _grid(cfg.preprocess.crop, patch, steps)
    inputs = _inputs(console, paths, out, overwrite)
    dev = _resolve_device(device)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _Fail(EXIT_USAGE, f"--out {out}: cannot create the folder ({exc})") from None

    if not quiet:
        console.print(Text(f"loading {cfg.model.describe()} on {dev}", style="dim"))
    loaded = _load_model(cfg, dev)
    rankers, described = _rankers(loaded, cfg, composite_names, baseline_names)
    low, high = pixel_bounds(cfg.preprocess)
    job = _Job(loaded, cfg, rankers, settings, low, high, RANDOM in baseline_names, dev, console, quiet)
    entries: list[dict[str, Any]] = []
    results: list[ImageResult] = []
    for index, item in enumerate(inputs):
        entry, result = _evaluate_one(job, item, index)
        entries.append(entry)
        if result is not None:
            results.append(result)

    summary = summarize(results, order)
    failures = [{"input": e["input"], "error": e["error"]} for e in entries if e["status"] != "ok"]
    code = EXIT_FAILED if failures else EXIT_OK
    if results:
        _plot(summary, out / EVALUATION_PNG, loaded, settings, grid, len(results))
    finished = time.perf_counter() - started
    doc = {
        "schema_version": SCHEMA_VERSION,
        "kind": EVALUATION_KIND,
        "run": _run_info(cfg, loaded, dev, out, settings, grid, described, started_at, finished),
        "summary": {
            "inputs": len(inputs),
            "evaluated": len(results),
            "failed": len(failures),
            "failures": failures,
            "ranked_by": f"mean aopc_logit over images, {ORDERS[order]}",
            "ranking": summary["ranking"],
            "explainers": summary["explainers"],
            "plot": EVALUATION_PNG if results else None,
            "exit_code": code,
        },
        "images": entries,
    }
    text = pretty_json(json_safe(doc)) + "\n"
    atomic_write(out / EVALUATION_JSON, lambda handle: handle.write(text.encode("utf-8")))
    if json_out:
        try:
            sys.stdout.write(text)
            sys.stdout.flush()
        except BrokenPipeError:
            pass
    if not quiet and results:
        console.print(_ranking_table(summary, order, len(results)))
    if failures:
        failed = f"{len(failures)} of {len(inputs)} images could not be evaluated"
        _error(console, f"{failed}; see {out / EVALUATION_JSON}")
    if not quiet:
        written = f"{out / EVALUATION_JSON}" + (f" and {out / EVALUATION_PNG}" if results else "")
        done = f"{len(results)} of {len(inputs)} images in {finished:.1f} s; wrote {written}"
        console.print(Text.assemble(("done ", "bold"), done))
    return code


def _grid(crop: int, patch: int, steps: int) -> PatchGrid:
    """The patch grid of the model's crop; usage errors for a patch or step count that does not fit."""
    try:
        grid = PatchGrid(crop, crop, patch)
    except ValueError as exc:
        raise _Fail(EXIT_USAGE, f"--patch {patch}: {exc}") from None
    if steps > grid.count:
        raise _Fail(
            EXIT_USAGE,
            f"--steps {steps}: a {crop}x{crop} crop has only {grid.count} patches of {patch}x{patch}; "
            f"use --steps {grid.count} or less, or a smaller --patch",
        )
    return grid


def _inputs(console: Console, paths: list[str], out: Path, overwrite: bool) -> list[ImageInput]:
    """The images to evaluate, found as ``lrp explain`` finds them (earlier outputs skipped)."""
    return _discover_inputs(
        console,
        _input_paths(paths, "evaluate"),
        out,
        check_outputs=lambda inputs, named: _outputs(out, inputs, named, overwrite),
    )


@dataclass(frozen=True)
class _Job:
    """What every image of a run is evaluated with."""

    loaded: LoadedModel
    cfg: Config
    rankers: dict[str, Ranker]
    settings: FlipSettings
    low: torch.Tensor
    high: torch.Tensor
    random: bool
    device: torch.device
    console: Console
    quiet: bool


def _evaluate_one(job: _Job, item: ImageInput, index: int) -> tuple[dict[str, Any], ImageResult | None]:
    """Evaluate one input: its ``images[]`` entry (status ``error`` if it cannot be read) and result."""
    start = time.perf_counter()
    entry: dict[str, Any] = {
        "index": index,
        "input": item.path.as_posix(),
        "status": "ok",
        "error": None,
        "warnings": [],
    }
    try:
        image = load_image(item.path, max_pixels=job.cfg.max_pixels)
        x, _ = preprocess(image.image, job.cfg.preprocess)
        image.image.close()
    except ImageLoadError as exc:
        entry.update(status="error", error=exc.reason)
        _error(job.console, f"{item.path}: {exc.reason}")
        return entry, None
    entry["warnings"] = list(image.warnings)
    result = evaluate_image(
        job.loaded.module,
        x.to(job.device),
        job.rankers,
        job.settings,
        low=job.low,
        high=job.high,
        random=job.random,
        image=index,
    )
    categories = job.loaded.categories
    label = categories[result.target] if result.target < len(categories) else f"class {result.target}"
    entry["target"] = {
        "index": result.target,
        "label": label,
        "source": "predicted",
        "logit": result.logit,
        "probability": result.probability,
    }
    entry["explainers"] = {name: curve.to_dict() for name, curve in result.curves.items()}
    entry["elapsed_s"] = time.perf_counter() - start
    if not job.quiet:
        scores = ", ".join(f"{name} {curve.aopc_logit:.2f}" for name, curve in result.curves.items())
        line = f"{item.path}: {label} ({result.probability:.1%}); AOPC {scores}"
        job.console.print(Text.assemble(("ok ", "green"), line))
    return entry, result


def _plot(
    summary: dict[str, Any], path: Path, loaded: LoadedModel, s: FlipSettings, grid: PatchGrid, images: int
) -> None:
    """Write ``evaluation.png`` with a title and axis labels that state the settings."""
    title = f"Pixel flipping ({_ORDER_NAMES[s.order]}): {loaded.spec.describe()}, {images} image(s)"
    subtitle = (
        f"{s.patch}x{s.patch} px patches of the {grid.height}x{grid.width} crop, one more per step; "
        f"{s.perturbation}: {PERTURBATIONS[s.perturbation]}; random: mean of {s.random_runs} orders"
    )
    area = min(1.0, s.steps * s.patch * s.patch / (grid.height * grid.width))
    first = ORDERS[s.order].split(":")[0]
    xlabel = f"k: patches perturbed, {first} (k = {s.steps} ≈ {area:.0%} of the crop)"
    plot_evaluation(summary, path, title=title, subtitle=subtitle, xlabel=xlabel)


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
        **run_header(cfg, loaded, device, started_at=started_at, finished_at=_now(), duration_s=duration),
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
        "grid": {
            "height": grid.height,
            "width": grid.width,
            "rows": grid.rows,
            "cols": grid.cols,
            "patches": grid.count,
        },
        "metric": "AOPC = 1/(L+1) * sum_{k=0..L} (f(x^0) - f(x^k)); f = target logit (aopc_logit) "
        "or its softmax probability (aopc_probability); x^k has k patches perturbed",
        "out_dir": out.as_posix(),
    }


def _ranking_table(summary: dict[str, Any], order: str, images: int) -> Table:
    """The ranking as a Rich table: AOPC on logits and on probabilities, mean ± standard error."""
    better = "higher" if order == "morf" else "lower"
    table = Table(
        title=f"pixel flipping, {_ORDER_NAMES[order]}: {better} AOPC is better "
        f"({images} image(s); mean ± standard error)",
        header_style="bold",
    )
    table.add_column("rank", justify="right")
    table.add_column("explainer")
    table.add_column("AOPC (logit)", justify="right")
    table.add_column("AOPC (probability)", justify="right")
    for row in summary["ranking"]:
        stats = summary["explainers"][row["explainer"]]
        table.add_row(
            str(row["rank"]),
            row["explainer"],
            mean_se_text(stats["aopc_logit"], 3),
            mean_se_text(stats["aopc_probability"], 4),
        )
    return table
