"""The ``lrp`` command line: ``explain``, ``inspect``, ``models``, ``composites``, ``config check``.

Standard output carries only results (``--json``: the report; ``--jsonl``: one object per
image; the listing commands' tables). Progress, logs, warnings and errors go to standard
error, without colour when it is not a terminal or ``NO_COLOR`` is set.

Exit codes: 0 all images explained; 1 some images failed (the report is still complete);
2 usage or config error; 3 the model could not be loaded; 130 interrupted (SIGINT/SIGTERM:
the report covers the images that finished).
"""

from __future__ import annotations

import difflib
import json
import os
import platform
import shlex
import shutil
import signal
import sys
import threading
import time
from datetime import datetime
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import torch
import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from lrpcli import PRESETS, Explainer, UnsupportedOpError, __version__, get_composite
from lrpcli.config import BUILTIN_CONFIGS, Config, ConfigError, load_config
from lrpcli.evaluate import BASELINES, ORDERS, PERTURBATIONS, OrderName, PerturbationName
from lrpcli.images import ImageInput, InputError, discover
from lrpcli.inspection import inspect_explainer, print_inspection
from lrpcli.models.registry import (
    EMBEDDED_MODELS,
    WEIGHT_FILE_SUFFIXES,
    LoadedModel,
    ModelLoadError,
    cached_weights_path,
    load_model,
    torchvision_classifiers,
    torchvision_weights,
    weight_names,
)
from lrpcli.pipeline import (
    REPORT_NAME,
    OutputConflict,
    OutputPaths,
    Pipeline,
    RunSettings,
    drop_previous_outputs,
    plan_outputs,
)
from lrpcli.render import get_cmap
from lrpcli.resume import ResumeError, ResumeState, load_previous
from lrpcli.report import ReportWriter, jsonl_line
from lrpcli.rules import AFFINE_RULES

__all__ = [
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_MODEL",
    "EXIT_OK",
    "EXIT_USAGE",
    "app",
    "main",
]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_MODEL = 3
EXIT_INTERRUPTED = 130

app = typer.Typer(
    name="lrp",
    help="Layer-wise Relevance Propagation heatmaps for image classifiers.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
config_app = typer.Typer(
    help="Work with YAML config files.", no_args_is_help=True, add_completion=False
)
app.add_typer(config_app, name="config")


class DeviceChoice(str, Enum):
    """Where the model runs."""

    cpu = "cpu"
    cuda = "cuda"
    auto = "auto"


class _Fail(Exception):
    """Print ``message`` as an error and exit with ``code``."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


# --------------------------------------------------------------------------- consoles


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def _stdin_is_tty() -> bool:
    return _isatty(sys.stdin)


def _no_color(stream: Any) -> bool:
    return bool(os.environ.get("NO_COLOR")) or not _isatty(stream)


def _stderr_console() -> Console:
    stream = sys.stderr
    tty = _isatty(stream)
    return Console(
        file=stream,
        no_color=_no_color(stream),
        highlight=False,
        soft_wrap=True,
        force_terminal=tty,
        color_system="auto" if tty and not os.environ.get("NO_COLOR") else None,
    )


def _stdout_console() -> Console:
    stream = sys.stdout
    return Console(file=stream, no_color=_no_color(stream), highlight=False, soft_wrap=True)


def _error(console: Console, message: str) -> None:
    console.print(Text.assemble(("error: ", "bold red"), message))


def _warn(console: Console, message: str) -> None:
    console.print(Text.assemble(("warning: ", "yellow"), message))


class _RateColumn(ProgressColumn):
    """Images per second."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text("-- img/s" if speed is None else f"{speed:.2f} img/s", style="cyan")


# --------------------------------------------------------------------------- helpers


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"lrpcli {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version_callback, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Layer-wise Relevance Propagation heatmaps for image classifiers."""


def _resolve_device(choice: DeviceChoice) -> torch.device:
    if choice is DeviceChoice.auto:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if choice is DeviceChoice.cuda and not torch.cuda.is_available():
        raise _Fail(
            EXIT_USAGE,
            "--device cuda: no CUDA device is available to PyTorch here; use --device cpu or auto",
        )
    return torch.device(choice.value)


def _parse_target(text: str, categories: list[str]) -> int | None:
    """``pred`` → None; an index; or a class name (case-insensitive, unambiguous)."""
    value = text.strip()
    if value.lower() in ("pred", "predicted", ""):
        return None
    n = len(categories)
    if value.lstrip("-").isdigit():
        index = int(value)
        if not 0 <= index < n:
            raise _Fail(EXIT_USAGE, f"--target {value}: class index out of range 0..{n - 1}")
        return index
    matches = [i for i, name in enumerate(categories) if name == value]
    if not matches:
        folded = value.casefold()
        matches = [i for i, name in enumerate(categories) if name.casefold() == folded]
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        listed = ", ".join(str(i) for i in matches)
        raise _Fail(
            EXIT_USAGE, f"--target {value!r} names several classes ({listed}); give the index instead"
        )
    close = difflib.get_close_matches(value, categories, n=3, cutoff=0.6)
    hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    raise _Fail(
        EXIT_USAGE,
        f"--target {value!r}: no class with that name{hint} (use pred, a class index 0..{n - 1}, "
        "or an exact class name)",
    )


def _install_signal_handlers(stop: threading.Event) -> dict[int, Any]:
    """First SIGINT/SIGTERM: set ``stop`` (finish what is in flight); second: abort now."""

    def handler(signum: int, frame: Any) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()

    previous: dict[int, Any] = {}
    if threading.current_thread() is not threading.main_thread():
        return previous
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            previous[sig] = signal.signal(sig, handler)
        except (ValueError, OSError):
            pass
    return previous


def _restore_signal_handlers(previous: dict[int, Any]) -> None:
    for sig, old in previous.items():
        try:
            signal.signal(sig, old)
        except (ValueError, OSError, TypeError):
            pass


def _now() -> str:
    return datetime.now().astimezone().isoformat(timespec="milliseconds")


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        try:
            return torch.cuda.get_device_name(device)
        except Exception:  # noqa: BLE001
            return "cuda"
    return platform.processor() or platform.machine() or "cpu"


# --------------------------------------------------------------------------- explain

PathsArg = Annotated[
    list[str] | None,
    typer.Argument(
        metavar="PATHS",
        help="Image files, folders (scanned recursively), glob patterns, or - to read paths "
        "from standard input (one per line; NUL-separated with --null). Without paths, paths "
        "are read from standard input when it is not a terminal.",
        show_default=False,
    ),
]


@app.command()
def explain(
    paths: PathsArg = None,
    config: Annotated[
        str | None,
        typer.Option(
            "--config",
            "-c",
            metavar="FILE",
            help="YAML config (model, preprocessing, rules, rendering). Default: the built-in "
            f"config (EfficientNet-Lite0, epsilon_plus_flat). Built-in names: {', '.join(BUILTIN_CONFIGS)}.",
            show_default=False,
        ),
    ] = None,
    out: Annotated[
        Path,
        typer.Option("--out", "-o", metavar="DIR", help="Output folder; outputs mirror the input tree."),
    ] = Path("lrp-out"),
    composite: Annotated[
        str | None,
        typer.Option(
            "--composite",
            metavar="NAME",
            help=f"Use this rule preset instead of the config's rules: {', '.join(PRESETS)}.",
            show_default=False,
        ),
    ] = None,
    target: Annotated[
        str,
        typer.Option(
            "--target",
            "-t",
            metavar="pred|INDEX|LABEL",
            help="Class to explain: the predicted one, a class index, or a class name.",
        ),
    ] = "pred",
    top_k: Annotated[
        int, typer.Option("--top-k", "-k", min=1, metavar="K", help="Predictions listed per image.")
    ] = 5,
    batch_size: Annotated[
        int, typer.Option("--batch-size", "-b", min=1, metavar="N", help="Images per forward/backward pass.")
    ] = 8,
    workers: Annotated[
        int,
        typer.Option(
            "--workers", "-w", min=1, metavar="N", help="Threads for decoding and for writing outputs (each)."
        ),
    ] = 2,
    device: Annotated[
        DeviceChoice, typer.Option("--device", help="Where to run the model.", case_sensitive=False)
    ] = DeviceChoice.auto,
    json_out: Annotated[
        bool, typer.Option("--json", help="Print the report (one JSON document) on standard output.")
    ] = False,
    jsonl_out: Annotated[
        bool,
        typer.Option("--jsonl", help="Print one JSON object per image on standard output as each finishes."),
    ] = False,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="No progress bar or per-image lines (errors still shown).")
    ] = False,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace existing outputs (never input files).")
    ] = False,
    fail_fast: Annotated[
        bool, typer.Option("--fail-fast", help="Stop at the first image that cannot be explained.")
    ] = False,
    null: Annotated[
        bool,
        typer.Option("--null", "-0", help="Paths on standard input are NUL-separated (find -print0)."),
    ] = False,
    save_npy: Annotated[
        bool, typer.Option("--save-npy", help="Also write NAME.relevance.npy (raw float32, 3xHxW).")
    ] = False,
    cmap: Annotated[
        str | None,
        typer.Option(
            "--cmap",
            metavar="NAME",
            help="Colour map (overrides the config): bwr, seismic, coolwarm, RdBu_r, bwr_black, "
            "or any matplotlib map.",
            show_default=False,
        ),
    ] = None,
    max_pixels: Annotated[
        int | None,
        typer.Option(
            "--max-pixels",
            min=1,
            metavar="N",
            help="Refuse images with more pixels than this (decompression-bomb limit; overrides the config).",
            show_default=False,
        ),
    ] = None,
    resume: Annotated[
        bool,
        typer.Option(
            "--resume",
            help="Keep the images an earlier run with the same config and options finished in "
            "--out (their outputs and report.json entries); explain only the rest.",
        ),
    ] = False,
    allow_python: Annotated[
        list[Path] | None,
        typer.Option(
            "--allow-python",
            metavar="FILE",
            help="Allow loading the model class from this Python file (the config's model.python). "
            "Its code runs with your permissions, so it is refused unless named here.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Explain images: write heatmaps, overlays and report.json into --out."""
    console = _stderr_console()
    stop = threading.Event()
    previous = _install_signal_handlers(stop)
    try:
        code = _explain(
            console,
            stop,
            paths=list(paths or []),
            config=config,
            out=out,
            composite=composite,
            target=target,
            top_k=top_k,
            batch_size=batch_size,
            workers=workers,
            device=device,
            json_out=json_out,
            jsonl_out=jsonl_out,
            quiet=quiet,
            overwrite=overwrite,
            fail_fast=fail_fast,
            null=null,
            save_npy=save_npy,
            cmap=cmap,
            max_pixels=max_pixels,
            resume=resume,
            allow_python=list(allow_python or []),
        )
    except _Fail as fail:
        _error(console, fail.message)
        code = fail.code
    except KeyboardInterrupt:
        _error(console, "interrupted")
        code = EXIT_INTERRUPTED
    finally:
        _restore_signal_handlers(previous)
    raise typer.Exit(code)


def _load_config(config: str | None, overrides: dict[str, Any]) -> Config:
    try:
        return load_config(config, overrides=overrides)
    except ConfigError as exc:
        raise _Fail(EXIT_USAGE, str(exc)) from None


def _load_model(cfg: Config, device: torch.device | str) -> LoadedModel:
    """The config's model on ``device``; failures exit with status 3 saying why."""
    try:
        return load_model(cfg.model, device)
    except ModelLoadError as exc:
        raise _Fail(EXIT_MODEL, f"could not load the model: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - anything else while building it
        raise _Fail(EXIT_MODEL, f"could not load the model ({type(exc).__name__}: {exc})") from None


def _make_explainer(loaded: LoadedModel, cfg: Config, rules: str | dict[str, Any] | None = None) -> Explainer:
    """An :class:`Explainer` for ``rules`` (default: the config's) with the config's rule options."""
    try:
        return Explainer(
            loaded.module,
            cfg.rules if rules is None else rules,
            ignore_bias=cfg.ignore_bias,
            **cfg.composite_options(),
        )
    except UnsupportedOpError as exc:
        raise _Fail(EXIT_MODEL, f"this model cannot be explained by lrpcli: {exc}") from None
    except (ValueError, TypeError) as exc:
        raise _Fail(EXIT_USAGE, f"{cfg.source}: rules: {exc}") from None


def _explain(console: Console, stop: threading.Event, **o: Any) -> int:
    # -- arguments, before any real work ------------------------------------------------------
    if o["json_out"] and o["jsonl_out"]:
        raise _Fail(EXIT_USAGE, "--json and --jsonl cannot be combined; choose one")
    if o["resume"] and o["overwrite"]:
        raise _Fail(
            EXIT_USAGE,
            "--resume and --overwrite cannot be combined: --resume keeps finished outputs, "
            "--overwrite redoes them; choose one",
        )
    paths: list[str] = o["paths"]
    if not paths:
        if _stdin_is_tty():
            raise _Fail(
                EXIT_USAGE,
                "no input paths; give image files, folders or glob patterns, or - to read paths "
                "from standard input (see lrp explain --help)",
            )
        paths = ["-"]
    if o["null"] and "-" not in paths:
        raise _Fail(EXIT_USAGE, "--null applies to paths read from standard input; add - to the paths")
    overrides: dict[str, Any] = {}
    if o["composite"] is not None:
        overrides["rules"] = _preset_name(o["composite"])
    if o["cmap"] is not None:
        try:
            get_cmap(o["cmap"])
        except ValueError as exc:
            raise _Fail(EXIT_USAGE, f"--cmap: {str(exc).split(' Valid choices')[0]}") from None
        overrides["render.cmap"] = o["cmap"]
    if o["max_pixels"] is not None:
        overrides["input.max_pixels"] = o["max_pixels"]
    cfg = _load_config(o["config"], overrides)
    _check_python_allowed(console, cfg, o["allow_python"])

    out: Path = o["out"]
    try:
        inputs = discover(paths, null=o["null"])
    except InputError as exc:
        raise _Fail(EXIT_USAGE, str(exc)) from None
    except OSError as exc:
        raise _Fail(EXIT_USAGE, f"cannot read the input paths: {exc}") from None
    named = [p for p in paths if p != "-" and os.path.isfile(p)]
    inputs, dropped = drop_previous_outputs(inputs, out, keep=named)
    if dropped:
        _warn(console, f"skipped {len(dropped)} earlier output file(s) found inside {out}")
    if not inputs:
        raise _Fail(EXIT_USAGE, f"no image files found in: {' '.join(paths)}")
    resuming = bool(o["resume"]) and (out / REPORT_NAME).exists()
    try:  # resuming from a matching report: outputs of images not finished may be replaced
        plans = plan_outputs(
            inputs, out, save_npy=o["save_npy"], overwrite=o["overwrite"] or resuming
        )
    except OutputConflict as exc:
        raise _Fail(EXIT_USAGE, str(exc)) from None
    state = _previous_run(console, out, inputs, plans, cfg, o) if resuming else None
    todo = state.todo() if state is not None else list(range(len(inputs)))
    device = _resolve_device(o["device"])
    if state is not None and not todo:
        return _all_reused(console, state, cfg, out, o)

    # -- model ----------------------------------------------------------------------------------
    quiet: bool = o["quiet"]
    if not quiet:
        console.print(Text(f"loading {cfg.model.describe()} on {device}", style="dim"))
    loaded = _load_model(cfg, device)
    target = _parse_target(o["target"], loaded.categories)
    explainer = _make_explainer(loaded, cfg)

    # -- run ------------------------------------------------------------------------------------
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _Fail(EXIT_USAGE, f"--out {out}: cannot create the folder ({exc})") from None
    settings = RunSettings(
        preprocess=cfg.preprocess,
        render=cfg.render,
        batch_size=o["batch_size"],
        workers=o["workers"],
        target=target,
        top_k=o["top_k"],
        save_npy=o["save_npy"],
        fail_fast=o["fail_fast"],
        max_pixels=cfg.max_pixels,
        ledger_steps=cfg.report.ledger_steps,
    )
    run_info = _run_info(cfg, loaded, explainer, device, out, o, settings)
    if state is not None:
        run_info["resumed"] = _resumed_info(state)
    writer = ReportWriter(out / REPORT_NAME, run_info, inputs=len(inputs), tolerance=cfg.report.tolerance)
    pipeline = Pipeline(explainer, loaded.categories, settings, out_dir=out, device=device)
    started = time.perf_counter()
    stdout_ok = [True]
    stop_noted = [False]
    show_progress = not quiet and console.is_terminal
    progress = Progress(
        TextColumn("[bold]explaining"),
        BarColumn(),
        MofNCompleteColumn(),
        _RateColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        console=console,
        disable=not show_progress,
        transient=False,
    )
    task = progress.add_task("explain", total=len(todo))

    def add_reused(before: int) -> None:
        if state is not None:
            for old in state.entries_before(before):
                writer.add(old, reused=True)

    def emit(entry: dict[str, Any]) -> None:
        if state is not None:  # the pipeline numbers the images it was given; restore the input order
            entry["index"] = todo[entry["index"]]
            add_reused(entry["index"])
        writer.add(entry)
        if o["jsonl_out"] and stdout_ok[0]:
            _write_stdout(jsonl_line(entry) + "\n", stdout_ok)
        _log_entry(console, entry, quiet)
        progress.advance(task)
        if stop.is_set() and not stop_noted[0]:
            stop_noted[0] = True
            _warn(console, "interrupt received: finishing the images in progress, then writing the report")

    interrupted = stop.is_set()
    outcome = None
    try:
        with progress:
            if not interrupted:
                outcome = pipeline.run([inputs[i] for i in todo], [plans[i] for i in todo], emit, stop)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        add_reused(len(inputs))
        if state is not None:
            state.close()
        elapsed = time.perf_counter() - started
        interrupted = interrupted or stop.is_set() or bool(outcome and outcome.interrupted)
        stopped_early = bool(outcome and outcome.stopped_early)
        if interrupted:
            code = EXIT_INTERRUPTED
        elif writer.failed or stopped_early:
            code = EXIT_FAILED
        else:
            code = EXIT_OK
        try:
            summary = writer.write(
                interrupted=interrupted,
                stopped_early=stopped_early,
                exit_code=code,
                elapsed_s=elapsed,
                run_updates={"finished_at": _now(), "duration_s": elapsed},
            )
        finally:
            writer.close()
    if o["json_out"]:
        _print_report(out)
    _log_summary(console, summary, out, quiet)
    return code


def _print_report(out: Path) -> None:
    """Copy ``OUT/report.json`` to standard output (``--json``)."""
    with open(out / REPORT_NAME, encoding="utf-8") as handle:
        try:
            shutil.copyfileobj(handle, sys.stdout)
            sys.stdout.flush()
        except BrokenPipeError:
            _silence_stdout()


def _check_python_allowed(console: Console, cfg: Config, allowed: list[Path]) -> None:
    """A config naming a Python model file is refused unless ``--allow-python`` names that file."""
    code = cfg.model.code
    if cfg.model.source != "python" or code is None:
        if allowed:
            _warn(console, f"--allow-python: {cfg.source} names no Python model; the option has no effect")
        return
    trusted = {Path(p).expanduser().resolve() for p in allowed}
    if code.resolve() not in trusted:
        raise _Fail(
            EXIT_USAGE,
            f"{cfg.source}: model.python names {code}; loading it runs that file's Python code "
            "with your permissions, which lrp does only when you allow that file explicitly. "
            f"If you trust it, add: --allow-python {shlex.quote(str(code))}",
        )


def _previous_run(
    console: Console,
    out: Path,
    inputs: list[ImageInput],
    plans: list[OutputPaths],
    cfg: Config,
    o: dict[str, Any],
) -> ResumeState:
    """Load ``OUT/report.json`` for ``--resume`` (usage error if it cannot be reused)."""
    options = {"target": o["target"], "top_k": o["top_k"], "save_npy": o["save_npy"]}
    try:
        state = load_previous(out, inputs, plans, digest=cfg.digest(), options=options)
    except ResumeError as exc:
        raise _Fail(EXIT_USAGE, str(exc)) from None
    assert state is not None  # the report exists
    if not o["quiet"]:
        console.print(
            Text(
                f"resuming from {state.report}: {state.reused} of {len(inputs)} images already "
                f"done, {len(inputs) - state.reused} to explain",
                style="dim",
            )
        )
    return state


def _resumed_info(state: ResumeState) -> dict[str, Any]:
    return {
        "report": state.report.as_posix(),
        "previous_started_at": state.run.get("started_at"),
        "reused": state.reused,
    }


def _all_reused(console: Console, state: ResumeState, cfg: Config, out: Path, o: dict[str, Any]) -> int:
    """``--resume`` with every image already done: rewrite the report, load no model, explain nothing."""
    started = time.perf_counter()
    run_info = dict(state.run)  # same config digest, so the same model, rules and layers
    run_info.update(
        options={**(state.run.get("options") or {}), "resume": True},
        lrpcli_version=__version__,
        torch_version=torch.__version__,
        python_version=platform.python_version(),
        started_at=_now(),
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
            run_updates={"finished_at": _now(), "duration_s": elapsed},
        )
    finally:
        writer.close()
        state.close()
    if o["json_out"]:
        _print_report(out)
    _log_summary(console, summary, out, o["quiet"])
    return EXIT_OK


def _write_stdout(text: str, ok: list[bool]) -> None:
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError:
        ok[0] = False
        _silence_stdout()


def _silence_stdout() -> None:
    """After a closed pipe (``lrp ... --jsonl | head``), send further output nowhere."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass


def _run_info(
    cfg: Config,
    loaded: LoadedModel,
    explainer: Explainer,
    device: torch.device,
    out: Path,
    o: dict[str, Any],
    settings: RunSettings,
) -> dict[str, Any]:
    spec = loaded.spec
    layers = [
        {"step": row["step"], "module": row["module"], "layer": row["layer"], "rule": row["rule"], "why": row["why"]}
        for row in explainer.rule_table()
        if row["kind"] == "affine"
    ]
    return {
        "lrpcli_version": __version__,
        "torch_version": torch.__version__,
        "python_version": platform.python_version(),
        "started_at": _now(),
        "finished_at": None,
        "duration_s": None,
        "device": str(device),
        "device_name": _device_name(device),
        "model": {
            "source": spec.source,
            "name": spec.name,
            "weights": spec.weights,
            "weights_source": loaded.weights_source,
            "num_classes": loaded.num_classes,
            "parameters": sum(p.numel() for p in loaded.module.parameters()),
        },
        "preprocess": cfg.to_dict()["preprocess"],
        "composite": {
            "name": cfg.composite_name,
            "spec": cfg.to_dict()["rules"],
            "rules": explainer.composite.describe(),
            "options": cfg.to_dict()["rule_options"],
        },
        "layers": layers,
        "config": {"source": cfg.source, "sha256": cfg.digest(), "resolved": cfg.to_dict()},
        "options": {
            "target": o["target"],
            "top_k": settings.top_k,
            "batch_size": settings.batch_size,
            "workers": settings.workers,
            "save_npy": settings.save_npy,
            "fail_fast": settings.fail_fast,
            "overwrite": o["overwrite"],
            "resume": o["resume"],
        },
        "out_dir": out.as_posix(),
    }


def _log_entry(console: Console, entry: dict[str, Any], quiet: bool) -> None:
    name = entry.get("input", "?")
    if entry.get("status") != "ok":
        _error(console, f"{name}: {entry.get('error')}")
        return
    if quiet:
        return
    for message in entry.get("warnings") or []:
        _warn(console, f"{name}: {message}")
    target = entry.get("target") or {}
    prob = target.get("probability")
    shown = f"{prob * 100:.1f}%" if isinstance(prob, float) else "?"
    rel = (entry.get("ledger") or {}).get("relative_closure_error")
    closure = f"{rel:.1e}" if isinstance(rel, float) else "n/a"
    console.print(
        Text.assemble(
            ("ok ", "green"),
            f"{name}: {target.get('label')} ({shown}), ledger closure {closure}",
        )
    )


def _log_summary(console: Console, summary: dict[str, Any], out: Path, quiet: bool) -> None:
    done, total = summary["processed"], summary["inputs"]
    failed = summary["failed"]
    if summary["interrupted"]:
        _warn(console, f"interrupted: {done} of {total} images finished; report: {out / REPORT_NAME}")
    elif summary["stopped_early"]:
        _error(console, f"stopped at the first failure (--fail-fast): {done} of {total} images processed")
    check = summary["closure_check"]
    worst = summary["max_relative_closure_error"]
    if check == "fail":
        _warn(
            console,
            f"ledger closure above the tolerance {summary['tolerance']:g} for "
            f"{len(summary['over_tolerance'])} image(s), worst {worst:.2e}",
        )
    if failed:
        _error(console, f"{failed} of {total} images failed; see {out / REPORT_NAME}")
    if quiet:
        return
    rate = summary.get("images_per_second")
    elapsed = summary.get("elapsed_s") or 0.0
    closure = f"max relative {worst:.1e} ≤ {summary['tolerance']:g}" if worst is not None else "n/a"
    console.print(
        Text.assemble(
            ("done ", "bold"),
            f"{summary['ok']} of {total} images explained in {elapsed:.1f} s"
            + (f" ({rate:.2f} images/s)" if rate else "")
            + (f", {summary['reused']} of them by an earlier run (--resume)" if summary.get("reused") else "")
            + f"; ledger closure: {check} ({closure}); outputs and report in {out}/",
        )
    )


# --------------------------------------------------------------------------- evaluate


@app.command()
def evaluate(
    paths: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="PATHS",
            help="Image files, folders (scanned recursively), glob patterns, or - to read paths from "
            "standard input (one per line), as for lrp explain.",
            show_default=False,
        ),
    ] = None,
    config: Annotated[
        str | None,
        typer.Option(
            "--config",
            "-c",
            metavar="FILE",
            help=f"YAML config (model, preprocessing, rule options). Built-in names: {', '.join(BUILTIN_CONFIGS)}.",
            show_default=False,
        ),
    ] = None,
    composites: Annotated[
        str | None,
        typer.Option(
            "--composites",
            metavar="A,B,...",
            help=f"LRP presets to evaluate (default: the config's rules): {', '.join(PRESETS)}.",
            show_default=False,
        ),
    ] = None,
    baselines: Annotated[
        str,
        typer.Option(
            "--baselines",
            metavar="A,B,...",
            help=f"Baselines to compare against ('' for none): {', '.join(BASELINES)}.",
        ),
    ] = ",".join(BASELINES),
    steps: Annotated[
        int, typer.Option("--steps", min=1, metavar="N", help="Perturbation steps L (one more patch per step).")
    ] = 100,
    patch: Annotated[
        int, typer.Option("--patch", min=1, metavar="P", help="Patch size in pixels of the model's input crop.")
    ] = 9,
    perturbation: Annotated[
        PerturbationName,
        typer.Option(
            "--perturbation",
            help="What perturbed patches become, in pixel space [0, 1] before normalisation: "
            + "; ".join(f"{k}: {v}" for k, v in PERTURBATIONS.items())
            + ".",
        ),
    ] = "uniform",
    order: Annotated[
        OrderName,
        typer.Option("--order", help="; ".join(f"{k}: {v}" for k, v in ORDERS.items()) + "."),
    ] = "morf",
    random_runs: Annotated[
        int, typer.Option("--random-runs", min=1, metavar="R", help="Random orders averaged for the random baseline.")
    ] = 5,
    seed: Annotated[
        int, typer.Option("--seed", metavar="S", help="Seed of the uniform noise, tie-breaks and random orders.")
    ] = 0,
    batch_size: Annotated[
        int,
        typer.Option("--batch-size", "-b", min=1, metavar="N", help="Perturbed copies per forward pass (bounds memory)."),
    ] = 32,
    device: Annotated[
        DeviceChoice, typer.Option("--device", help="Where to run the model.", case_sensitive=False)
    ] = DeviceChoice.auto,
    out: Annotated[
        Path, typer.Option("--out", "-o", metavar="DIR", help="Folder for evaluation.json and evaluation.png.")
    ] = Path("lrp-out"),
    json_out: Annotated[
        bool, typer.Option("--json", help="Print evaluation.json (one JSON document) on standard output.")
    ] = False,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="No per-image lines, ranking table or summary (errors still shown).")
    ] = False,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace an existing evaluation.json / evaluation.png.")
    ] = False,
) -> None:
    """Pixel-flipping faithfulness: perturb patches in relevance order, write AOPC and curves."""
    from lrpcli.evaluate_run import run_evaluate

    console = _stderr_console()
    try:
        code = run_evaluate(
            console,
            paths=list(paths or []),
            config=config,
            composites=composites,
            baselines=baselines,
            steps=steps,
            patch=patch,
            perturbation=perturbation,
            order=order,
            random_runs=random_runs,
            seed=seed,
            batch_size=batch_size,
            device=device,
            out=out,
            json_out=json_out,
            quiet=quiet,
            overwrite=overwrite,
        )
    except _Fail as fail:
        _error(console, fail.message)
        code = fail.code
    except KeyboardInterrupt:
        _error(console, "interrupted")
        code = EXIT_INTERRUPTED
    raise typer.Exit(code)


# --------------------------------------------------------------------------- listings


@app.command()
def models() -> None:
    """List the model sources a config can name (and which torchvision weights are cached)."""
    console = _stdout_console()
    console.print(Text("Model sources for the config's model: section", style="bold"))
    console.print()
    console.print(Text("embedded: NAME   (weights bundled, works offline)", style="bold"))
    for name, text in EMBEDDED_MODELS.items():
        console.print(f"  {name:<22} {text}", markup=False)
    console.print()
    hub = Path(torch.hub.get_dir()) / "checkpoints"
    console.print(
        Text(
            "torchvision: NAME + weights: ENUM_NAME | DEFAULT | none   "
            f"(* = weights file cached in {hub})",
            style="bold",
        )
    )
    table = Table(show_header=True, header_style="bold", box=None, pad_edge=False, padding=(0, 2, 0, 2))
    table.add_column("architecture")
    table.add_column("weights")
    for name in torchvision_classifiers():
        names = []
        for wname in weight_names(name):
            if wname == "DEFAULT":
                continue
            member = torchvision_weights(name, wname)
            if not member.meta.get("categories"):
                continue
            star = "*" if cached_weights_path(member).is_file() else ""
            names.append(wname + star)
        table.add_row(name, ", ".join(names))
    console.print(table)
    console.print()
    console.print(
        Text(
            f"file: PATH ({'/'.join(WEIGHT_FILE_SUFFIXES)}) + arch: NAME (any name above) + "
            "num_classes: N [+ classes: FILE]",
            style="bold",
        )
    )
    console.print(
        "  a local state dict; .pth/.pt files are read with torch.load(weights_only=True), "
        "so pickled Python objects are refused",
        markup=False,
    )
    console.print()
    console.print(
        Text(
            "python: FILE.py:ClassName + weights: FILE [+ num_classes: N] [+ classes: FILE] "
            "[+ kwargs: {...}]",
            style="bold",
        )
    )
    console.print(
        "  your own nn.Module; its file runs as Python code, so lrp explain needs --allow-python FILE",
        markup=False,
    )


@app.command()
def composites() -> None:
    """List the rule presets, the rules they assign, and the rules a custom map may use."""
    console = _stdout_console()
    for name, description in PRESETS.items():
        console.print(Text(name, style="bold"))
        console.print(f"  {description}", markup=False)
        for selector, rule in get_composite(name).describe().items():
            console.print(f"    {selector:<22} {rule}", markup=False)
        console.print()
    console.print(Text("Rules for a custom rules: map (rule: NAME plus parameters)", style="bold"))
    import inspect

    for name, cls in sorted(AFFINE_RULES.items()):
        params = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
        doc = (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else ""
        console.print(f"  {name:<12} {', '.join(params) or '-':<28} {doc}", markup=False)
    console.print()
    console.print(
        "Selectors: first, last, conv, linear, a module class name (Conv2d), or a module-name glob "
        "(features.2*); 'preset: NAME' starts from a preset.",
        markup=False,
    )


@app.command()
def inspect(
    config: Annotated[
        str | None,
        typer.Option(
            "--config", "-c", metavar="FILE",
            help=f"Config naming the model and rules (default: built-in; also {', '.join(BUILTIN_CONFIGS)}).",
        ),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(
            "--model", "-m", metavar="NAME",
            help="Inspect this model instead of the config's: an embedded name or a torchvision "
            "architecture (built with random weights; see lrp models).",
        ),
    ] = None,
    composite: Annotated[
        str | None, typer.Option("--composite", metavar="NAME", help="Rule preset instead of the config's rules.")
    ] = None,
    all_steps: Annotated[
        bool, typer.Option("--all", help="Also list element-wise and data-movement steps.")
    ] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print one JSON document on standard output.")] = False,
    allow_python: Annotated[
        list[Path] | None,
        typer.Option(
            "--allow-python", metavar="FILE", show_default=False,
            help="Allow loading the model class from this Python file (the config's model.python).",
        ),
    ] = None,
) -> None:
    """Show which rule every layer gets under the composite, and why, plus the canonizations applied."""
    console = _stderr_console()
    try:
        overrides: dict[str, Any] = {}
        if composite is not None:
            overrides["rules"] = _preset_name(composite)
        if model is not None:
            overrides["model"] = _model_override(model)
        cfg = _load_config(config, overrides)
        _check_python_allowed(console, cfg, list(allow_python or []))
        explainer = _make_explainer(_load_model(cfg, "cpu"), cfg)
    except _Fail as fail:
        _error(console, fail.message)
        raise typer.Exit(fail.code) from None
    data = inspect_explainer(explainer)
    data = {"model": cfg.model.describe(), "config": cfg.source, "composite": cfg.composite_name, **data}
    if json_out:
        sys.stdout.write(json.dumps(data, indent=2) + "\n")
        return
    title = f"{cfg.model.describe()} under {cfg.composite_name}"
    out = _stdout_console()
    if not out.is_terminal:
        out.width = 200  # a file or pipe: keep table rows on one line
    print_inspection(out, data, title, all_steps=all_steps)


def _preset_name(name: str) -> str:
    if name not in PRESETS:
        close = difflib.get_close_matches(name, list(PRESETS), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise _Fail(
            EXIT_USAGE,
            f"--composite {name!r}: unknown preset{hint}; choose one of: "
            f"{', '.join(PRESETS)} (custom rule maps go in the config's rules section)",
        )
    return name


def _model_override(name: str) -> dict[str, Any]:
    if name in EMBEDDED_MODELS:
        return {"embedded": name}
    if name in torchvision_classifiers():
        return {"torchvision": name, "weights": "none"}
    close = difflib.get_close_matches(name, list(EMBEDDED_MODELS) + list(torchvision_classifiers()), n=3)
    hint = f" (did you mean {', '.join(close)}?)" if close else ""
    raise _Fail(EXIT_USAGE, f"--model {name!r}: unknown model{hint}; lrp models lists them")


@config_app.command("check")
def config_check(
    file: Annotated[
        str,
        typer.Argument(
            metavar="FILE", help=f"Config file to validate (or a built-in name: {', '.join(BUILTIN_CONFIGS)})."
        ),
    ],
) -> None:
    """Validate a config and print the resolved one (all defaults filled in) as YAML."""
    console = _stderr_console()
    try:
        cfg = load_config(file)
    except ConfigError as exc:
        _error(console, str(exc))
        raise typer.Exit(EXIT_USAGE) from None
    sys.stdout.write(f"# resolved from {cfg.source}\n# sha256: {cfg.digest()}\n")
    sys.stdout.write(cfg.to_yaml())
    sys.stdout.flush()
    console.print(Text.assemble(("ok ", "green"), f"{cfg.source} is valid"))


def main() -> None:
    """Console-script entry point (``lrp``)."""
    app(prog_name="lrp")
