"""The run behind ``lrp evaluate``: pixel-flipping curves and AOPC for LRP composites and baselines.

Config, model, device and inputs are handled by the same helpers as ``lrp explain``; images
are decoded and preprocessed by :mod:`lrpcli.io.preprocess`; the maths is in
:mod:`lrpcli.evaluation` (flipping, summary, comparisons, sanity), the plot in
:mod:`lrpcli.evaluation.plot`. Writes ``evaluation.json`` and ``evaluation.png`` into
``--out``; the tables go to standard error, ``--json`` prints the document on standard output.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.text import Text

from lrpcli.cli.documents import write_document
from lrpcli.cli.explain_scale import shard_option
from lrpcli.cli.errors import EXIT_FAILED, EXIT_OK, EXIT_USAGE, Fail, error
from lrpcli.cli.loading import (
    check_python_allowed,
    discover_inputs,
    input_paths,
    load_cli_config,
    load_cli_model,
    make_explainer,
    resolve_device,
)
from lrpcli.cli.options import DeviceChoice
from lrpcli.config import Config
from lrpcli.core.composites import PRESETS
from lrpcli.core.engine import Explainer
from lrpcli.evaluation.comparisons import compare, comparison_pairs
from lrpcli.evaluation.document import (
    EVALUATION_JSON,
    EVALUATION_PNG,
    evaluation_document,
    plot_labels,
)
from lrpcli.evaluation.flipping import (
    BASELINES,
    OCCLUSION,
    RANDOM,
    FlipSettings,
    ImageResult,
    PatchGrid,
    Ranker,
    baseline_ranker,
    evaluate_image,
    lrp_ranker,
)
from lrpcli.evaluation.plot import plot_evaluation
from lrpcli.evaluation.sanity import affine_layers, randomized_copy, sanity_levels, sanity_summary, spearman
from lrpcli.evaluation.summary import summarize
from lrpcli.evaluation.tables import comparisons_table, ranking_table, sanity_table
from lrpcli.hints import did_you_mean
from lrpcli.io.decode import ImageLoadError, load_image
from lrpcli.io.inputs import ImageInput
from lrpcli.io.preprocess import pixel_bounds, preprocess
from lrpcli.models.sources import describe
from lrpcli.models.spec import LoadedModel
from lrpcli.run.entries import now
from lrpcli.run.shards import take_shard

__all__ = ["parse_names", "run_evaluate"]

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
            hint = did_you_mean(name, valid)
            raise Fail(EXIT_USAGE, f"{option} {name!r}: unknown name{hint}; choose from: {', '.join(valid)}")
        names.append(name)
    return names


def _outputs(out: Path, inputs: list[ImageInput], named: list[str], overwrite: bool) -> list[ImageInput]:
    """Check the two output files; drop an earlier ``evaluation.png`` found while scanning."""
    targets = {os.path.realpath(out / name) for name in (EVALUATION_JSON, EVALUATION_PNG)}
    explicit = {os.path.realpath(p) for p in named}
    clash = targets & explicit
    if clash:
        first = sorted(clash)[0]
        raise Fail(EXIT_USAGE, f"--out {out}: writing the evaluation would replace the input {first}")
    for name in (EVALUATION_JSON, EVALUATION_PNG):
        path = out / name
        if (path.exists() or path.is_symlink()) and not overwrite:
            raise Fail(
                EXIT_USAGE, f"{path} already exists; use --overwrite to replace it or choose another --out"
            )
        if path.is_symlink() or path.is_dir():
            raise Fail(EXIT_USAGE, f"{path} is a symbolic link or a folder; refusing to write through it")
    return [item for item in inputs if os.path.realpath(item.path) not in targets]


def _rankers(
    loaded: LoadedModel, cfg: Config, composites: list[str], baselines: list[str]
) -> tuple[dict[str, Ranker], dict[str, Explainer], list[dict[str, str]]]:
    """A relevance-map function per composite and map baseline, the LRP explainers, and every
    explainer described (in the order of the curves: rankers, occlusion, random)."""
    rankers: dict[str, Ranker] = {}
    explainers: dict[str, Explainer] = {}
    described: list[dict[str, str]] = []
    for name in composites:
        explainer = make_explainer(loaded, cfg, None if name == cfg.composite_name else name)
        explainers[name] = explainer
        rankers[name] = lrp_ranker(explainer)
        text = PRESETS[name].description if name in PRESETS else "the config's rules"
        description = f"LRP, {text}; relevance summed over channels"
        described.append({"name": name, "kind": "lrp", "description": description})
    for name in sorted(baselines, key=lambda n: (n == RANDOM, n == OCCLUSION)):  # as evaluate_image
        if name not in (RANDOM, OCCLUSION):
            rankers[name] = baseline_ranker(name, loaded.module)
        described.append({"name": name, "kind": "baseline", "description": BASELINES[name]})
    return rankers, explainers, described


def _sanity_explainers(
    loaded: LoadedModel, cfg: Config, composites: list[str], seed: int
) -> tuple[dict[str, dict[str, Explainer]], list[dict[str, Any]]]:
    """Per LRP explainer and level, an explainer on a copy of the model with top layers re-initialised."""
    names = affine_layers(loaded.module)
    try:
        levels = sanity_levels(len(names))
    except ValueError as exc:
        raise Fail(EXIT_USAGE, f"--sanity: {exc}; run without --sanity") from None
    out: dict[str, dict[str, Explainer]] = {name: {} for name in composites}
    described = []
    for level, count in levels.items():
        twin = replace(loaded, module=randomized_copy(loaded.module, count, seed=seed).eval())
        for name in composites:
            out[name][level] = make_explainer(twin, cfg, None if name == cfg.composite_name else name)
        described.append({"name": level, "layers": count, "reinitialised": names[len(names) - count :]})
    return out, described


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
    seed: int | None,
    batch_size: int,
    sanity: bool,
    device: DeviceChoice,
    out: Path,
    json_out: bool,
    quiet: bool,
    overwrite: bool,
    allow_python: list[Path] | None = None,
    shard: str | None = None,
) -> int:
    """Run ``lrp evaluate``; returns the exit code (usage and model errors raise ``_Fail``).

    ``seed`` (``None``: the config's ``model.seed``) seeds the noise, the random orders and a
    model built without weights alike."""
    started_at, started = now(), time.perf_counter()
    part = shard_option(shard)
    cfg = load_cli_config(config, {}, seed=seed)
    seed = cfg.model.seed
    check_python_allowed(console, cfg, allow_python or [])
    if composites is None:
        composite_names = [cfg.composite_name]
    else:
        composite_names = parse_names(composites, list(PRESETS), "--composites")
    baseline_names = parse_names(baselines, list(BASELINES), "--baselines")
    if not composite_names and not baseline_names:
        raise Fail(EXIT_USAGE, "nothing to evaluate: --composites and --baselines are both empty")
    if sanity and not composite_names:
        raise Fail(EXIT_USAGE, "--sanity checks LRP explainers, but --composites is empty; name one or drop --sanity")
    settings = FlipSettings(patch, steps, perturbation, order, random_runs, seed, batch_size)
    grid = _grid(cfg.preprocess.crop, patch, steps)
    inputs = _inputs(console, paths, out, overwrite)
    found = len(inputs)
    inputs = [inputs[i] for i in take_shard(inputs, part)]  # --shard K/N: this shard's inputs only
    dev = resolve_device(device)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise Fail(EXIT_USAGE, f"--out {out}: cannot create the folder ({exc})") from None

    if not quiet:
        console.print(Text(f"loading {describe(cfg.model)} on {dev}", style="dim"))
    loaded = load_cli_model(cfg, dev)
    rankers, lrp_explainers, described = _rankers(loaded, cfg, composite_names, baseline_names)
    randomized, levels = _sanity_explainers(loaded, cfg, composite_names, seed) if sanity else ({}, [])
    low, high = pixel_bounds(cfg.preprocess)
    job = _Job(
        loaded, cfg, rankers, settings, low, high, RANDOM in baseline_names, dev, console, quiet,
        occlusion=OCCLUSION in baseline_names, explainers=lrp_explainers, randomized=randomized,
    )  # fmt: skip
    rhos: dict[str, dict[str, list[float]]] = {n: {lv["name"]: [] for lv in levels} for n in randomized}
    entries: list[dict[str, Any]] = []
    results: list[ImageResult] = []
    for index, item in enumerate(inputs):
        entry, result = _evaluate_one(job, item, index)
        entries.append(entry)
        if result is not None:
            results.append(result)
            for name, by_level in entry.get("sanity", {}).items():
                for level, rho in by_level.items():
                    rhos[name][level].append(rho)

    summary = summarize(results, order, seed=seed)
    names = [d["name"] for d in described]
    comparisons = compare(results, order, comparison_pairs(names, composite_names), seed=seed)
    sanity_doc = None
    if sanity:
        sanity_doc = {
            "method": "Adebayo et al. 2018, cascading model randomisation: Spearman rank correlation "
            "over pixels of the map (relevance summed over channels, same target) with the map of "
            "a copy whose top layers have weights and biases drawn from N(0, std of the originals)",
            "seed": seed,
            "levels": levels,
            "explainers": sanity_summary(rhos),
        }
    failed = sum(e["status"] != "ok" for e in entries)
    code = EXIT_FAILED if failed else EXIT_OK
    if results:
        labels = plot_labels(loaded, settings, grid, len(results))
        plot_evaluation(summary, out / EVALUATION_PNG, **labels)
    finished = time.perf_counter() - started
    doc = evaluation_document(
        cfg=cfg, loaded=loaded, device=dev, out=out, settings=settings, grid=grid, described=described,
        started_at=started_at, duration=finished, entries=entries, summary=summary, inputs=len(inputs),
        evaluated=len(results), exit_code=code, comparisons=comparisons, sanity=sanity_doc,
    )  # fmt: skip
    if part is not None:
        doc["run"]["shard"] = {**part.to_dict(), "inputs": len(inputs), "all_inputs": found}
    write_document(out / EVALUATION_JSON, doc, to_stdout=json_out)
    if not quiet and results:
        console.print(ranking_table(summary, order, len(results)))
        if comparisons:
            console.print(comparisons_table(comparisons))
        if sanity_doc is not None:
            console.print(sanity_table(sanity_doc))
    if failed:
        error(console, f"{failed} of {len(inputs)} images could not be evaluated; see {out / EVALUATION_JSON}")
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
        raise Fail(EXIT_USAGE, f"--patch {patch}: {exc}") from None
    if steps > grid.count:
        raise Fail(
            EXIT_USAGE,
            f"--steps {steps}: a {crop}x{crop} crop has only {grid.count} patches of {patch}x{patch}; "
            f"use --steps {grid.count} or less, or a smaller --patch",
        )
    return grid


def _inputs(console: Console, paths: list[str], out: Path, overwrite: bool) -> list[ImageInput]:
    """The images to evaluate, found as ``lrp explain`` finds them (earlier outputs skipped)."""
    return discover_inputs(
        console,
        input_paths(paths, "evaluate"),
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
    occlusion: bool = False
    explainers: dict[str, Explainer] = field(default_factory=dict)
    randomized: dict[str, dict[str, Explainer]] = field(default_factory=dict)


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
        error(job.console, f"{item.path}: {exc.reason}")
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
        occlusion=job.occlusion,
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
    if result.lerf_curves is not None:
        for name, srg in result.srg().items():
            entry["explainers"][name].update(order="morf", srg=srg, lerf=result.lerf_curves[name].to_dict())
    if job.randomized:
        entry["sanity"] = _sanity_one(job, x.to(job.device), result.target)
    entry["elapsed_s"] = time.perf_counter() - start
    if not job.quiet:
        if result.lerf_curves is not None:
            scores = ", ".join(f"{name} {srg:.2f}" for name, srg in result.srg().items())
            what = "SRG"
        else:
            scores = ", ".join(f"{name} {curve.aopc_logit:.2f}" for name, curve in result.curves.items())
            what = "AOPC"
        line = f"{item.path}: {label} ({result.probability:.1%}); {what} {scores}"
        job.console.print(Text.assemble(("ok ", "green"), line))
    return entry, result


def _sanity_one(job: _Job, x: torch.Tensor, target: int) -> dict[str, dict[str, float]]:
    """Spearman ρ of each LRP map with the maps of the randomised copies, on one image."""
    out: dict[str, dict[str, float]] = {}
    for name, by_level in job.randomized.items():
        heat = job.explainers[name](x[None], target).relevance[0].sum(dim=0)
        out[name] = {
            level: spearman(heat, explainer(x[None], target).relevance[0].sum(dim=0))
            for level, explainer in by_level.items()
        }
    return out
