"""The run behind ``lrp explain``: inputs and output plan, model, the batch pipeline,
report.json, a reader closing standard output, and ``--resume`` (reusing an earlier run's
finished images). The options' own checks are in :mod:`lrpcli.cli.explain_options`.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)
from rich.text import Text

from lrpcli.cli.audit_run import write_explain_html
from lrpcli.cli.errors import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, Fail, warn
from lrpcli.cli.explain_options import ExplainOptions, composite_list, map_count, render_overrides, target_plan
from lrpcli.cli.explain_scale import PipelineFactory, check_backend, explainers, ray_runner, shard_option
from lrpcli.cli.explain_output import EtaColumn, RateColumn, log_entry, log_summary, print_report, write_stdout
from lrpcli.cli.loading import (
    check_python_allowed,
    discover_inputs,
    input_paths,
    load_cli_config,
    load_cli_model,
    preset_name,
    resolve_device,
)
from lrpcli.config import Config
from lrpcli.core.engine import Explainer
from lrpcli.io.inputs import ImageInput
from lrpcli.io.render import get_cmap
from lrpcli.models.sources import describe
from lrpcli.models.spec import LoadedModel
from lrpcli.models.weights import sha256_file
from lrpcli.run.entries import ImageEntry, config_digest, now, run_header, tool_versions
from lrpcli.io.files import remove_stale_temporaries
from lrpcli.run.journal import Journal
from lrpcli.run.outputs import JOURNAL_NAME, REPORT_NAME, OutputConflict, OutputPaths, plan_outputs
from lrpcli.run.pipeline import Pipeline, RunSettings
from lrpcli.run.report import ReportWriter, json_safe, jsonl_line
from lrpcli.run.shards import Shard, take_shard
from lrpcli.run.resume import ResumeError, ResumeState, load_previous

__all__ = ["ExplainOptions", "run_explain"]


def run_explain(console: Console, stop: threading.Event, o: ExplainOptions) -> int:
    """Run ``lrp explain`` with the command's options ``o``; returns the exit code (usage and model
    errors raise ``_Fail``). Setting ``stop`` finishes the images in flight and writes the report."""
    # -- arguments, before any real work ------------------------------------------------------
    if o.json_out and o.jsonl_out:
        raise Fail(EXIT_USAGE, "--json and --jsonl cannot be combined; choose one")
    if o.resume and o.overwrite:
        raise Fail(
            EXIT_USAGE,
            "--resume and --overwrite cannot be combined: --resume keeps finished outputs, "
            "--overwrite redoes them; choose one",
        )
    shard = shard_option(o.shard)
    check_backend(o)
    paths = input_paths(o.paths, "explain")
    if o.null and "-" not in paths:
        raise Fail(EXIT_USAGE, "--null applies to paths read from standard input; add - to the paths")
    overrides: dict[str, Any] = {}
    if o.composite is not None:
        overrides["rules"] = preset_name(o.composite)
    if o.cmap is not None:
        try:
            get_cmap(o.cmap)
        except ValueError as exc:
            raise Fail(EXIT_USAGE, f"--cmap: {str(exc).split(' Valid choices')[0]}") from None
        overrides["render.cmap"] = o.cmap
    if o.max_pixels is not None:
        overrides["input.max_pixels"] = o.max_pixels
    overrides.update(render_overrides(o))
    compared = composite_list(o.composites)
    if compared and o.composite is not None:
        raise Fail(EXIT_USAGE, "--composite and --composites cannot be combined; list them all in --composites")
    if compared and compared[0] != "config":
        overrides["rules"] = compared[0]
    cfg = load_cli_config(o.config, overrides, seed=o.seed)
    check_python_allowed(console, cfg, o.allow_python)

    out: Path = o.out
    inputs = discover_inputs(console, paths, out, null=o.null)
    found = len(inputs)
    numbers = take_shard(inputs, shard)  # each input's index among all found (--shard: before sharding)
    inputs = [inputs[i] for i in numbers]
    resuming = bool(o.resume) and ((out / REPORT_NAME).exists() or (out / JOURNAL_NAME).exists())
    try:  # resuming from a matching report: outputs of images not finished may be replaced
        plans = plan_outputs(
            inputs, out, save_npy=o.save_npy, compare=bool(compared), overwrite=o.overwrite or resuming,
            layers=o.layers, maps=map_count(o.target),
        )  # fmt: skip
    except OutputConflict as exc:
        raise Fail(EXIT_USAGE, str(exc)) from None
    state = _previous_run(console, out, inputs, plans, cfg, o) if resuming else None
    if resuming:
        remove_stale_temporaries(out)  # what a killed run was writing when it died
    todo = state.todo() if state is not None else list(range(len(inputs)))
    device = resolve_device(o.device)
    if state is not None and not todo:
        return _all_reused(console, state, cfg, out, o)

    # -- model ----------------------------------------------------------------------------------
    quiet: bool = o.quiet
    if not quiet:
        console.print(Text(f"loading {describe(cfg.model)} on {device}", style="dim"))
    loaded = load_cli_model(cfg, device)
    plan = target_plan(o, loaded.categories, inputs)
    explainer, others = explainers(o, cfg, loaded, overrides, compared)  # others: --composites after the first
    probe = torch.zeros(1, 3, cfg.preprocess.crop, cfg.preprocess.crop, device=device) if o.layers else None
    for name in o.layers:
        try:
            explainer.layer_step(name, probe)
        except ValueError as exc:
            raise Fail(EXIT_USAGE, f"--layer {name}: {exc}") from None

    # -- run ------------------------------------------------------------------------------------
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise Fail(EXIT_USAGE, f"--out {out}: cannot create the folder ({exc})") from None
    settings = RunSettings(
        preprocess=cfg.preprocess,
        render=cfg.render,
        batch_size=o.batch_size,
        workers=o.workers,
        targets=plan,
        layers=tuple(o.layers),
        top_k=o.top_k,
        save_npy=o.save_npy,
        fail_fast=o.fail_fast,
        max_pixels=cfg.max_pixels,
        ledger_steps=cfg.report.ledger_steps,
    )
    run_info = _run_info(cfg, loaded, explainer, device, out, o, settings)
    if state is not None:
        run_info["resumed"] = _resumed_info(state)
    if shard is not None:
        run_info["shard"] = {**shard.to_dict(), "inputs": len(inputs), "all_inputs": found}
    pipeline = Pipeline(explainer, loaded.categories, settings, out_dir=out, device=device, comparisons=others, main_name=compared[0] if compared else "")
    runner: Any = pipeline
    if o.backend == "ray":
        runner = ray_runner(PipelineFactory(o, overrides, compared, settings, out))
        run_info["backend"] = runner.describe()
    writer = ReportWriter(out / REPORT_NAME, run_info, inputs=len(inputs), tolerance=cfg.report.tolerance)
    journal = Journal.open(out, json_safe(run_info), len(inputs), resume=resuming)
    started = time.perf_counter()
    stdout_ok = [True]
    stop_noted = [False]
    show_progress = not quiet and console.is_terminal
    progress = Progress(
        TextColumn("[bold]explaining"),
        BarColumn(),
        MofNCompleteColumn(),
        RateColumn(),
        TimeElapsedColumn(),
        EtaColumn(),
        console=console,
        disable=not show_progress,
        transient=False,
    )
    task = progress.add_task("explain", total=len(todo))

    def add_reused(before: int) -> None:
        if state is not None:
            for old in state.entries_before(before):
                old.index = numbers[old.index]
                writer.add(old, reused=True)

    def emit(entry: ImageEntry) -> None:
        local = todo[entry.index]  # the pipeline numbers the images it was given; restore the input order
        add_reused(local)
        entry.index = numbers[local]
        writer.add(entry)
        journal.append(entry.to_dict())  # its files are in place: a killed run keeps it
        if o.jsonl_out and stdout_ok[0]:
            write_stdout(jsonl_line(entry.to_dict()) + "\n", stdout_ok)
            if not stdout_ok[0]:  # the reader has what it wanted (``| head -1``): launch no more work
                stop.set()
        log_entry(console, entry, quiet, out)
        progress.advance(task)
        if stop.is_set() and stdout_ok[0] and not stop_noted[0]:
            stop_noted[0] = True
            warn(
                console,
                "interrupt received: finishing the images in progress, then writing the report "
                "(run the same command with --resume to explain the rest)",
            )

    interrupted = stop.is_set()
    outcome = None
    try:
        with progress:
            if not interrupted:
                outcome = runner.run([inputs[i] for i in todo], [plans[i] for i in todo], emit, stop)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        if runner is not pipeline:
            runner.close()
        add_reused(len(inputs))
        if state is not None:
            state.close()
        elapsed = time.perf_counter() - started
        closed = not stdout_ok[0]
        interrupted = (interrupted or stop.is_set() or bool(outcome and outcome.interrupted)) and not closed
        stopped_early = bool(outcome and outcome.stopped_early)
        if interrupted:
            code = EXIT_INTERRUPTED
        elif closed:
            code = EXIT_OK
        elif writer.failed or stopped_early:
            code = EXIT_FAILED
        else:
            code = EXIT_OK
        try:
            summary = writer.write(
                interrupted=interrupted,
                stopped_early=stopped_early,
                stdout_closed=closed,
                exit_code=code,
                elapsed_s=elapsed,
                run_updates={"finished_at": now(), "duration_s": elapsed},
            )
            journal.remove()  # report.json holds its entries now
        finally:
            journal.close()
            writer.close()
    if o.html:
        write_explain_html(console, out, quiet)
    if o.json_out:
        print_report(out)
    log_summary(console, summary, out, quiet)
    return code


def _previous_run(
    console: Console,
    out: Path,
    inputs: list[ImageInput],
    plans: list[OutputPaths],
    cfg: Config,
    o: ExplainOptions,
) -> ResumeState:
    """Load ``OUT/report.json`` for ``--resume`` (usage error if it cannot be reused)."""
    options = {"target": o.target, "top_k": o.top_k, "save_npy": o.save_npy, "composites": o.composites, **_target_options(o)}
    try:
        state = load_previous(out, inputs, plans, digest=cfg.digest(), options=options)
    except ResumeError as exc:
        raise Fail(EXIT_USAGE, str(exc)) from None
    assert state is not None  # the report exists
    before, now = Shard.of_run(state.run), shard_option(o.shard)
    if before != now:
        def name(s: Shard | None) -> str:
            return f"shard {s}" if s else "all inputs (no --shard)"

        raise Fail(
            EXIT_USAGE,
            f"--resume: {state.report} was written for {name(before)}, this run is for {name(now)}; "
            "resume each shard into its own --out with the same --shard",
        )
    if not o.quiet:
        console.print(
            Text(
                f"resuming from {state.report}: {state.reused} of {len(inputs)} images already "
                f"done, {len(inputs) - state.reused} to explain",
                style="dim",
            )
        )
    return state


def _resumed_info(state: ResumeState) -> dict[str, Any]:
    """report.json's ``run.resumed``: the earlier report, when its run started, the images reused."""
    return {
        "report": state.report.as_posix(),
        "previous_started_at": state.run.get("started_at"),
        "reused": state.reused,
    }


def _all_reused(console: Console, state: ResumeState, cfg: Config, out: Path, o: ExplainOptions) -> int:
    """``--resume`` with every image already done: rewrite the report, load no model, explain nothing."""
    started = time.perf_counter()
    run_info = dict(state.run)  # same config digest, so the same model, rules and layers
    run_info.update(
        options={**(state.run.get("options") or {}), "resume": True},
        **tool_versions(),
        started_at=now(),
        out_dir=out.as_posix(),
        resumed=_resumed_info(state),
    )
    writer = ReportWriter(out / REPORT_NAME, run_info, inputs=state.total, tolerance=cfg.report.tolerance)
    try:
        for old in state.entries_before(state.total):
            writer.add(old, reused=True)
        elapsed = time.perf_counter() - started
        summary = writer.write(
            exit_code=EXIT_OK,
            elapsed_s=elapsed,
            run_updates={"finished_at": now(), "duration_s": elapsed},
        )
        (out / JOURNAL_NAME).unlink(missing_ok=True)  # report.json holds its entries now
    finally:
        writer.close()
        state.close()
    if o.html:
        write_explain_html(console, out, o.quiet)
    if o.json_out:
        print_report(out)
    log_summary(console, summary, out, o.quiet)
    return EXIT_OK


def _target_options(o: ExplainOptions) -> dict[str, Any]:
    """The run options that decide what the maps explain (a resumed run must repeat them)."""
    digest = sha256_file(o.targets_file) if o.targets_file is not None and o.targets_file.is_file() else None
    return {
        "contrast": o.contrast,
        "targets": None if o.targets_file is None else o.targets_file.as_posix(),
        "targets_sha256": digest,
        "layers": list(o.layers) or None,
    }


def _run_info(
    cfg: Config,
    loaded: LoadedModel,
    explainer: Explainer,
    device: torch.device,
    out: Path,
    o: ExplainOptions,
    settings: RunSettings,
) -> dict[str, Any]:
    """report.json's ``run``: the shared header, then composite, layers, config, options, out."""
    resolved = cfg.to_dict()
    layers = [
        {"step": row["step"], "module": row["module"], "layer": row["layer"], "rule": row["rule"], "why": row["why"]}
        for row in explainer.rule_table()
        if row["kind"] == "affine"
    ]
    run = run_header(cfg, loaded, device, started_at=now())
    run["model"]["parameters"] = sum(p.numel() for p in loaded.module.parameters())
    return {
        **run,
        "composite": {
            "name": cfg.composite_name,
            "spec": resolved["rules"],
            "rules": explainer.composite.describe(),
            "options": resolved["rule_options"],
        },
        "layers": layers,
        "config": {**config_digest(cfg), "resolved": resolved},
        "targets": settings.targets.to_dict(),
        "options": {
            "target": o.target,
            **_target_options(o),
            "top_k": settings.top_k,
            "batch_size": settings.batch_size,
            "workers": settings.workers,
            "save_npy": settings.save_npy,
            "fail_fast": settings.fail_fast,
            "overwrite": o.overwrite,
            "resume": o.resume,
            "composites": o.composites,
            "shard": o.shard,
            "backend": o.backend,
        },
        "out_dir": out.as_posix(),
    }
