"""The ``lrp tune`` run: split the images, search the candidates, check the winner on held-out images.

The images are shuffled with ``--seed`` and split into a search part and a held-out part. The
candidates (:mod:`lrpcli.tuning.space`) are first screened for ``--min-pixel-share`` on two
search images (one LRP pass each, no flipping), then raced by successive halving on the search
images. The winner, gradient×input and random orders are then scored on the held-out images,
with paired bootstrap intervals; the winner is written as a ready config.
"""

from __future__ import annotations

import math
import random as pyrandom
import statistics
import time
from pathlib import Path
from typing import Any

import torch
import yaml
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table
from rich.text import Text

from lrpcli.cli.documents import write_document
from lrpcli.cli.errors import EXIT_OK, EXIT_USAGE, Fail, error
from lrpcli.cli.loading import (
    check_python_allowed,
    discover_inputs,
    input_paths,
    load_cli_config,
    load_cli_model,
    resolve_device,
)
from lrpcli.cli.options import DeviceChoice
from lrpcli.config import Config
from lrpcli.core.canonize import prepare
from lrpcli.core.engine import Explainer
from lrpcli.evaluation.flipping import RANDOM, FlipSettings, PatchGrid, baseline_ranker
from lrpcli.evaluation.stats import paired_comparison
from lrpcli.io.decode import ImageLoadError, load_image
from lrpcli.io.files import atomic_write
from lrpcli.io.preprocess import pixel_bounds, preprocess
from lrpcli.models.sources import describe
from lrpcli.run.entries import now, run_header
from lrpcli.tuning.halving import (
    BudgetError,
    plan_cost,
    plan_rounds,
    successive_halving,
)
from lrpcli.tuning.plot import plot_tune
from lrpcli.tuning.scoring import SCORES, Scorer
from lrpcli.tuning.space import Candidate, search_space

TUNE_JSON, TUNE_PNG, TUNED_YAML = "tune.json", "tune.png", "tuned.yaml"
GXI = "gradient_x_input"
#: forward-pass equivalents of one LRP explanation (a forward and a reverse walk)
LRP_COST = 3


def run_tune(
    console: Console,
    *,
    paths: list[str],
    config: str | None,
    score: str,
    space: str,
    budget: int | None,
    minutes: float | None,
    split: float,
    held_out: list[str] | None = None,
    min_pixel_share: float | None,
    eta: int,
    steps: int,
    patch: int,
    perturbation: str,
    random_runs: int,
    seed: int | None,
    batch_size: int,
    device: DeviceChoice,
    out: Path,
    json_out: bool,
    quiet: bool,
    overwrite: bool,
    allow_python: list[Path] | None = None,
) -> int:
    """Run ``lrp tune``; returns the exit code (usage and model errors raise ``Fail``).

    ``seed`` (``None``: the config's ``model.seed``) seeds the split, the noise, the random
    orders and a model built without weights alike."""
    started_at, started = now(), time.perf_counter()
    if score not in SCORES:
        raise Fail(EXIT_USAGE, f"--score {score!r}: choose one of: {', '.join(SCORES)}")
    deadline = None if minutes is None else time.monotonic() + 60.0 * minutes
    cfg = load_cli_config(config, {}, seed=seed)
    seed = cfg.model.seed
    check_python_allowed(console, cfg, allow_python or [])
    settings = FlipSettings(patch, steps, perturbation, "morf", random_runs, seed, batch_size)
    if steps > PatchGrid(cfg.preprocess.crop, cfg.preprocess.crop, min(patch, cfg.preprocess.crop)).count:
        raise Fail(EXIT_USAGE, f"--steps {steps} exceeds the number of {patch}x{patch} patches of the crop")
    targets = [out / n for n in (TUNE_JSON, TUNE_PNG, TUNED_YAML)]
    for path in targets:
        if (path.exists() or path.is_symlink()) and not overwrite:
            raise Fail(EXIT_USAGE, f"{path} already exists; use --overwrite to replace it or choose another --out")
    inputs = discover_inputs(console, input_paths(paths, "tune"), out)
    held_inputs = discover_inputs(console, held_out, out) if held_out else []
    both = {str(i.path.resolve()) for i in inputs} & {str(i.path.resolve()) for i in held_inputs}
    if both:
        raise Fail(EXIT_USAGE, f"--held-out names {len(both)} image(s) that are also search images, e.g. {sorted(both)[0]}")
    dev = resolve_device(device)
    if not quiet:
        console.print(Text(f"loading {describe(cfg.model)} on {dev}", style="dim"))
    loaded = load_cli_model(cfg, dev)
    images, names, is_held = [], [], []
    for item in [*inputs, *held_inputs]:
        try:
            image = load_image(item.path, max_pixels=cfg.max_pixels)
            x, _ = preprocess(image.image, cfg.preprocess)
        except ImageLoadError as exc:
            error(console, f"{item.path}: {exc.reason}; left out")
            continue
        images.append(x.to(dev))
        names.append(item.path.as_posix())
        is_held.append(item in held_inputs)
    if held_inputs:  # the caller's split
        search = [i for i, h in enumerate(is_held) if not h]
        held = [i for i, h in enumerate(is_held) if h]
        if not search or not held:
            raise Fail(EXIT_USAGE, "lrp tune needs at least one readable search image and one readable --held-out image")
    else:
        if len(images) < 2:
            raise Fail(EXIT_USAGE, f"lrp tune needs at least 2 readable images (a search and a held-out part), got {len(images)}")
        order = list(range(len(images)))
        pyrandom.Random(seed).shuffle(order)
        n_search = min(len(images) - 1, max(1, round(split * len(images))))
        search, held = order[:n_search], order[n_search:]

    candidates = _candidates(loaded.module, space)
    low, high = pixel_bounds(cfg.preprocess)
    by_name = {c.name: c for c in candidates}

    def build(name: str) -> Explainer:
        c = by_name[name]
        options = {**cfg.composite_options(), **c.options}
        return Explainer(loaded.module, c.rules, ignore_bias=cfg.ignore_bias, **options)

    scorer = Scorer(loaded.module, build, [images[i] for i in search], settings, low.to(dev), high.to(dev),
                    score=score, image_ids=search)  # fmt: skip
    screened = _screen(console, scorer, candidates, min_pixel_share, quiet)
    per_eval = (steps + 1) * (2 if score == "srg" else 1) + LRP_COST
    evals = None if budget is None else budget // per_eval
    try:
        rounds = plan_rounds(len(screened), len(search), eta=eta, budget=evals)
    except BudgetError as exc:
        raise Fail(EXIT_USAGE, f"--budget {budget} forward passes ({per_eval} per image evaluation): {exc}") from None
    planned = plan_cost(rounds)
    if not quiet:
        console.print(Text(
            f"{len(screened)} candidates, {len(search)} search and {len(held)} held-out images; "
            f"successive halving in {len(rounds)} rounds, {planned} image evaluations "
            f"(~{planned * per_eval} forward passes)", style="dim"))  # fmt: skip
    with _progress(console, quiet) as progress:
        task = progress.add_task("searching", total=planned)
        result = successive_halving(
            [c.name for c in screened], len(search), scorer, eta=eta, budget=evals, deadline=deadline,
            progress=lambda name, image: progress.advance(task),
            on_round=lambda r, ranking: quiet or console.print(Text(
                f"round {r + 1}: {len(ranking)} candidates on {ranking[0][2]} images; best {ranking[0][0]} "
                f"({score} {ranking[0][1]:.3f})", style="dim")),
        )  # fmt: skip
    winner = by_name[result.winner]
    scorer.forget([winner.name])
    held_scores = _held_out(scorer, loaded.module, images, held, settings, winner.name, low.to(dev), high.to(dev), score)
    comparisons = {
        other: paired_comparison(held_scores[winner.name], held_scores[other], seed=seed)
        for other in (GXI, RANDOM)
    }
    rows = _rows(result, scorer)
    out.mkdir(parents=True, exist_ok=True)
    yaml_text = _tuned_yaml(cfg, winner, held_scores, comparisons, score)
    atomic_write(out / TUNED_YAML, lambda h: h.write(yaml_text.encode("utf-8")))
    held_summary = {n: _mean_se(v) for n, v in held_scores.items()}
    plot_tune(rows, held_summary, out / TUNE_PNG, score=score,
              title=f"lrp tune: {describe(cfg.model)}, {len(search)} search + {len(held)} held-out images")  # fmt: skip
    doc = {
        "kind": "lrpcli.tune",
        "schema_version": 1,
        "run": run_header(cfg, loaded, dev, started_at=started_at, finished_at=now(),
                          duration_s=time.perf_counter() - started),  # fmt: skip
        "settings": {
            "score": score, "space": space, "eta": eta, "budget_forward_passes": budget, "minutes": minutes,
            "min_pixel_share": min_pixel_share, "patch": patch, "steps": steps, "perturbation": perturbation,
            "random_runs": random_runs, "seed": seed, "split": "--held-out" if held_inputs else split,
        },  # fmt: skip
        "images": {"search": [names[i] for i in search], "held_out": [names[i] for i in held]},
        "plan": [{"candidates": r.candidates, "images": r.images} for r in rounds],
        "stopped_early": result.stopped_early,
        "candidates": rows,
        "winner": {"name": winner.name, **winner.config_sections()},
        "held_out": {
            "scores": held_scores,
            "summary": held_summary,
            "comparisons": {k: _comparison_dict(v) for k, v in comparisons.items()},
        },
        "outputs": {"config": str(out / TUNED_YAML), "plot": str(out / TUNE_PNG)},
    }
    write_document(out / TUNE_JSON, doc, to_stdout=json_out)
    if not quiet:
        console.print(_table(rows[:12], score))
        for other, cmp in comparisons.items():
            console.print(_comparison_line(winner.name, other, cmp, score))
        done = f"winner {winner.name}; wrote {out / TUNED_YAML}, {out / TUNE_JSON} and {out / TUNE_PNG}"
        console.print(Text.assemble(("done ", "bold"), done, f" in {time.perf_counter() - started:.0f} s"))
    return EXIT_OK


def _candidates(model: torch.nn.Module, space: str) -> list[Candidate]:
    steps = [s for s in prepare(model).affine_steps() if s.affine.kind != "scale"]  # type: ignore[union-attr]
    if not steps:
        raise Fail(EXIT_USAGE, "the model has no convolution or dense layer to tune rules for")
    first_kind = steps[0].affine.kind  # type: ignore[union-attr]
    try:
        return search_space([s.module or s.name for s in steps], space, first_kind=first_kind)
    except ValueError as exc:
        raise Fail(EXIT_USAGE, f"--space: {exc}") from None


def _screen(
    console: Console, scorer: Scorer, candidates: list[Candidate], minimum: float | None, quiet: bool
) -> list[Candidate]:
    """Candidates whose median pixel share on (up to) two search images is at least ``minimum``."""
    if minimum is None:
        return candidates
    probe = list(range(min(2, len(scorer.images))))
    kept = []
    for c in candidates:
        shares = []
        for i in probe:
            exp = scorer.explainer(c.name)(scorer.images[i][None], scorer.target(i))
            shares.append(float(exp.ledger.pixel_share()[0]))
        if statistics.median(shares) >= minimum:
            kept.append(c)
    scorer.forget([])
    if not kept:
        raise Fail(EXIT_USAGE, f"no candidate sends a median {minimum:g} of f(x) to the pixels; lower --min-pixel-share")
    if not quiet:
        console.print(Text(f"--min-pixel-share {minimum:g}: {len(kept)} of {len(candidates)} candidates kept", style="dim"))
    return kept


def _held_out(
    scorer: Scorer, model: torch.nn.Module, images: list[torch.Tensor], held: list[int], settings: FlipSettings,
    winner: str, low: torch.Tensor, high: torch.Tensor, score: str,
) -> dict[str, list[float]]:  # fmt: skip
    """Scores of the winner, gradient×input and random orders on each held-out image."""
    checker = Scorer(model, lambda _: scorer.explainer(winner), [images[i] for i in held], settings, low, high,
                     score=score, image_ids=held)  # fmt: skip
    out: dict[str, list[float]] = {winner: [], GXI: [], RANDOM: []}
    for k in range(len(held)):
        got = checker.curves({winner: checker.ranker(winner, k), GXI: baseline_ranker(GXI, model)}, k, random=True)
        for name in out:
            out[name].append(got[name])
    scorer.stats.setdefault("held_out:" + winner, {}).update(checker.stats.get(winner, {}))
    return out


def _rows(result: Any, scorer: Scorer) -> list[dict[str, Any]]:
    """One row per candidate, best first: the round it reached, its mean on the images of that round."""
    reached: dict[str, int] = {}
    for r, ranking in enumerate(result.rounds):
        for name, _, _ in ranking:
            reached[name] = r
    rows = []
    for name, scores in result.scores.items():
        if not scores:
            continue
        stats = scorer.stats.get(name, {})
        shares = [s.pixel_share for s in stats.values()]
        negs = [s.negative_share for s in stats.values()]
        rows.append({
            "name": name, "round": reached.get(name, 0), "images": len(scores),
            "mean": sum(scores.values()) / len(scores), "scores": [scores[i] for i in sorted(scores)],
            "pixel_share_median": statistics.median(shares) if shares else None,
            "negative_share_mean": sum(negs) / len(negs) if negs else None,
        })  # fmt: skip
    rows.sort(key=lambda r: (-r["round"], -r["mean"] if not math.isnan(r["mean"]) else math.inf))
    return rows


def _mean_se(values: list[float]) -> dict[str, Any]:
    n = len(values)
    mean = sum(values) / n
    se = statistics.stdev(values) / math.sqrt(n) if n > 1 else None
    return {"mean": mean, "se": se, "images": n}


def _comparison_dict(cmp: Any) -> dict[str, Any]:
    return {"mean_diff": cmp.mean_diff, "ci_low": cmp.low, "ci_high": cmp.high, "wilcoxon_p": cmp.wilcoxon_p,
            "images": cmp.n, "verdict": cmp.verdict}  # fmt: skip


def _comparison_line(winner: str, other: str, cmp: Any, score: str) -> Text:
    verdict = cmp.verdict if cmp.verdict == "not distinguishable" else f"{cmp.verdict} than {other}"
    return Text(
        f"held out ({cmp.n} images): {winner} − {other}: {score} {cmp.mean_diff:+.3f}, 95% CI "
        f"[{cmp.low:+.3f}, {cmp.high:+.3f}], Wilcoxon p = {cmp.wilcoxon_p:.3g}: {verdict}"
    )


def _tuned_yaml(cfg: Config, winner: Candidate, held: dict[str, list[float]], comparisons: dict[str, Any], score: str) -> str:
    """The config with the winner's rules: loads with ``lrp explain --config``."""
    doc = cfg.to_dict()
    doc["rules"] = winner.rules
    doc["rule_options"] = {**doc["rule_options"], **winner.options}
    mean = sum(held[winner.name]) / len(held[winner.name])
    lines = [f"# written by lrp tune: {winner.name}", f"# held-out {score}: {mean:.3f} over {len(held[winner.name])} images"]
    for other, cmp in comparisons.items():
        lines.append(f"#   vs {other}: {cmp.mean_diff:+.3f} [95% CI {cmp.low:+.3f}, {cmp.high:+.3f}] {cmp.verdict}")
    return "\n".join(lines) + "\n" + yaml.safe_dump(doc, sort_keys=False, allow_unicode=True)


def _progress(console: Console, quiet: bool) -> Progress:
    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=console, disable=quiet or not console.is_terminal, transient=True,
    )  # fmt: skip


def _table(rows: list[dict[str, Any]], score: str) -> Table:
    table = Table(title=f"lrp tune: best candidates by {score} on the search images")
    for col in ("candidate", "round", "images", score, "pixel share", "negative share"):
        table.add_column(col, justify="left" if col == "candidate" else "right")
    for r in rows:
        share = "—" if r["pixel_share_median"] is None else f"{r['pixel_share_median']:.3g}"
        neg = "—" if r["negative_share_mean"] is None else f"{r['negative_share_mean']:.2f}"
        table.add_row(r["name"], str(r["round"]), str(r["images"]), f"{r['mean']:.3f}", share, neg)
    return table
