"""What the ``lrp`` commands share: the Typer apps, exit codes, consoles, option types,
config/model/explainer loading and input discovery with exits that say why, and the opening
fields of a run record.

Command modules import from here; nothing here imports a command module.
"""

from __future__ import annotations

import difflib
import os
import platform
import shlex
import sys
from collections.abc import Callable
from datetime import datetime
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, NoReturn

import torch
import typer
from rich.console import Console
from rich.text import Text

from lrpcli import PRESETS, Explainer, UnsupportedOpError, __version__
from lrpcli.allocator import tune_allocator
from lrpcli.config import BUILTIN_CONFIGS, Config, ConfigError, load_config
from lrpcli.images import ImageInput, InputError, discover
from lrpcli.models.registry import LoadedModel, ModelLoadError, load_model
from lrpcli.pipeline import drop_previous_outputs

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


# --------------------------------------------------------------------------- shared options

PathsArgument = Annotated[
    list[str] | None,
    typer.Argument(
        metavar="PATHS",
        help="Image files, folders (scanned recursively), glob patterns, or - to read paths "
        "from standard input (one per line). Without paths, paths are read from standard input "
        "when it is not a terminal.",
        show_default=False,
    ),
]
ConfigOption = Annotated[
    str | None,
    typer.Option(
        "--config",
        "-c",
        metavar="FILE",
        help="YAML config (model, preprocessing, rules, rendering). Default: the built-in "
        f"config (EfficientNet-Lite0, epsilon_plus_flat). Built-in names: {', '.join(BUILTIN_CONFIGS)}.",
        show_default=False,
    ),
]
CompositeOption = Annotated[
    str | None,
    typer.Option(
        "--composite",
        metavar="NAME",
        help=f"Use this rule preset instead of the config's rules: {', '.join(PRESETS)}.",
        show_default=False,
    ),
]
OutOption = Annotated[
    Path, typer.Option("--out", "-o", metavar="DIR", help="Output folder (created if missing).")
]
DeviceOption = Annotated[
    DeviceChoice, typer.Option("--device", help="Where to run the model.", case_sensitive=False)
]
JsonOption = Annotated[
    bool, typer.Option("--json", help="Print the result as one JSON document on standard output.")
]
QuietOption = Annotated[
    bool,
    typer.Option("--quiet", "-q", help="No progress, per-image lines, tables or summary (errors still shown)."),
]
OverwriteOption = Annotated[
    bool, typer.Option("--overwrite", help="Replace existing outputs (never input files).")
]
AllowPythonOption = Annotated[
    list[Path] | None,
    typer.Option(
        "--allow-python",
        metavar="FILE",
        help="Allow loading the model class from this Python file (the config's model.python). "
        "Its code runs with your permissions, so it is refused unless named here.",
        show_default=False,
    ),
]


# --------------------------------------------------------------------------- consoles


def _isatty(stream: Any) -> bool:
    """Whether ``stream`` is a terminal (False for anything without a working ``isatty``)."""
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def _stdin_is_tty() -> bool:
    """Whether standard input is a terminal (then no paths are read from it)."""
    return _isatty(sys.stdin)


def _no_color(stream: Any) -> bool:
    """No colour on ``stream``: ``NO_COLOR`` is set or it is not a terminal."""
    return bool(os.environ.get("NO_COLOR")) or not _isatty(stream)


def _stderr_console() -> Console:
    """Standard error; colour only on a terminal without ``NO_COLOR``."""
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
    """Standard output, for the listing commands' tables."""
    stream = sys.stdout
    return Console(file=stream, no_color=_no_color(stream), highlight=False, soft_wrap=True)


def _error(console: Console, message: str) -> None:
    """Print ``error: message``."""
    console.print(Text.assemble(("error: ", "bold red"), message))


def _warn(console: Console, message: str) -> None:
    """Print ``warning: message``."""
    console.print(Text.assemble(("warning: ", "yellow"), message))


def _exit_with(console: Console, work: Callable[[], int]) -> NoReturn:
    """Run a command's ``work`` and exit with its code; a ``_Fail`` or an interrupt is printed as an error."""
    try:
        code = work()
    except _Fail as fail:
        _error(console, fail.message)
        code = fail.code
    except KeyboardInterrupt:
        _error(console, "interrupted")
        code = EXIT_INTERRUPTED
    raise typer.Exit(code)


# --------------------------------------------------------------------------- root


def _version_callback(value: bool) -> None:
    """``--version``: print the version and exit."""
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
    tune_allocator()  # freed tensors stay in the process: no page faults on the next batch


def main() -> None:
    """Console-script entry point (``lrp``)."""
    app(prog_name="lrp")


# --------------------------------------------------------------------------- config, model, explainer


def _load_config(config: str | None, overrides: dict[str, Any]) -> Config:
    """The config file or built-in name (default: the built-in config); errors exit with status 2."""
    try:
        return load_config(config, overrides=overrides)
    except ConfigError as exc:
        raise _Fail(EXIT_USAGE, str(exc)) from None


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


def _preset_name(name: str) -> str:
    """``name`` if it is a rule preset; otherwise a usage error suggesting the closest one."""
    if name not in PRESETS:
        close = difflib.get_close_matches(name, list(PRESETS), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise _Fail(
            EXIT_USAGE,
            f"--composite {name!r}: unknown preset{hint}; choose one of: "
            f"{', '.join(PRESETS)} (custom rule maps go in the config's rules section)",
        )
    return name


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


# --------------------------------------------------------------------------- inputs


def _input_paths(paths: list[str], command: str) -> list[str]:
    """``paths``, or ``-`` (standard input) when none are given and standard input is not a terminal."""
    if paths:
        return paths
    if _stdin_is_tty():
        raise _Fail(
            EXIT_USAGE,
            "no input paths; give image files, folders or glob patterns, or - to read paths "
            f"from standard input (see lrp {command} --help)",
        )
    return ["-"]


def _discover_inputs(
    console: Console,
    paths: list[str],
    out: Path,
    *,
    null: bool = False,
    check_outputs: Callable[[list[ImageInput], list[str]], list[ImageInput]] | None = None,
) -> list[ImageInput]:
    """The images ``paths`` name, less earlier outputs found inside ``out`` (with a warning).

    ``check_outputs(inputs, named_files)`` may refuse the run or drop more inputs; a usage
    error if no image is left.
    """
    try:
        inputs = discover(paths, null=null)
    except InputError as exc:
        raise _Fail(EXIT_USAGE, str(exc)) from None
    except OSError as exc:
        raise _Fail(EXIT_USAGE, f"cannot read the input paths: {exc}") from None
    named = [p for p in paths if p != "-" and os.path.isfile(p)]
    inputs, dropped = drop_previous_outputs(inputs, out, keep=named)
    if check_outputs is not None:
        inputs = check_outputs(inputs, named)
    if dropped:
        _warn(console, f"skipped {len(dropped)} earlier output file(s) found inside {out}")
    if not inputs:
        raise _Fail(EXIT_USAGE, f"no image files found in: {' '.join(paths)}")
    return inputs


# --------------------------------------------------------------------------- device and run record


def _resolve_device(choice: DeviceChoice) -> torch.device:
    """``auto`` → CUDA when available, else CPU; ``cuda`` without a CUDA device is a usage error."""
    if choice is DeviceChoice.auto:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if choice is DeviceChoice.cuda and not torch.cuda.is_available():
        raise _Fail(
            EXIT_USAGE,
            "--device cuda: no CUDA device is available to PyTorch here; use --device cpu or auto",
        )
    return torch.device(choice.value)


def _device_name(device: torch.device) -> str:
    """The GPU's name, or the CPU's as far as the platform tells."""
    if device.type == "cuda":
        try:
            return torch.cuda.get_device_name(device)
        except Exception:  # noqa: BLE001
            return "cuda"
    return platform.processor() or platform.machine() or "cpu"


def _now() -> str:
    """The local time with its UTC offset, ISO 8601 to the millisecond."""
    return datetime.now().astimezone().isoformat(timespec="milliseconds")


def tool_versions() -> dict[str, str]:
    """The lrpcli, PyTorch and Python versions, as a run record names them."""
    return {
        "lrpcli_version": __version__,
        "torch_version": torch.__version__,
        "python_version": platform.python_version(),
    }


def run_header(
    cfg: Config,
    loaded: LoadedModel,
    device: torch.device,
    *,
    started_at: str,
    finished_at: str | None = None,
    duration_s: float | None = None,
) -> dict[str, Any]:
    """The fields that open the ``run`` record of report.json and evaluation.json.

    Versions, times, the device, the model and the resolved preprocessing; each command
    appends its own fields, and :func:`config_digest` for the config.
    """
    spec = loaded.spec
    return {
        **tool_versions(),
        "started_at": started_at,
        "finished_at": finished_at,
        "duration_s": duration_s,
        "device": str(device),
        "device_name": _device_name(device),
        "allocator": tune_allocator(),  # what the command did at start (cached)
        "model": {
            "source": spec.source,
            "name": spec.name,
            "weights": spec.weights,
            "weights_source": loaded.weights_source,
            "num_classes": loaded.num_classes,
        },
        "preprocess": cfg.to_dict()["preprocess"],
    }


def config_digest(cfg: Config) -> dict[str, str]:
    """Where the config came from and the SHA-256 of its resolved form."""
    return {"source": cfg.source, "sha256": cfg.digest()}
