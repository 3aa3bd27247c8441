"""What the commands share before any real work: the config, the model, the explainer, the inputs
and the device, each failing with an exit code and a message that says how to fix it.
"""

from __future__ import annotations

import os
import shlex
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from rich.console import Console

from lrpcli.cli.errors import EXIT_MODEL, EXIT_USAGE, Fail, isatty, warn
from lrpcli.cli.options import DeviceChoice
from lrpcli.config import Config, ConfigError, load_config
from lrpcli.core.composites import PRESETS
from lrpcli.core.engine import Explainer
from lrpcli.core.program import UnsupportedOpError
from lrpcli.hints import did_you_mean
from lrpcli.io.inputs import ImageInput, InputError, discover
from lrpcli.models.sources import load_model
from lrpcli.models.spec import LoadedModel, ModelLoadError
from lrpcli.run.drawing import is_our_png
from lrpcli.run.outputs import drop_previous_outputs

__all__ = [
    "check_python_allowed",
    "discover_inputs",
    "input_paths",
    "load_cli_config",
    "load_cli_model",
    "make_explainer",
    "preset_name",
    "resolve_device",
    "stdin_is_tty",
]


def load_cli_config(config: str | None, overrides: dict[str, Any], *, seed: int | None = None) -> Config:
    """The config file or built-in name (default: the built-in config); errors exit with status 2.

    ``seed`` (``--seed``) replaces the config's ``model.seed``, which seeds the random
    initialisation of a model built without weights (and is then part of the config digest).
    """
    try:
        cfg = load_config(config, overrides=overrides)
    except ConfigError as exc:
        raise Fail(EXIT_USAGE, str(exc)) from None
    if seed is not None:
        cfg = replace(cfg, model=replace(cfg.model, seed=seed))
    return cfg


def check_python_allowed(console: Console, cfg: Config, allowed: list[Path]) -> None:
    """A config naming a Python model file is refused unless ``--allow-python`` names that file."""
    code = cfg.model.code
    if cfg.model.source != "python" or code is None:
        if allowed:
            warn(console, f"--allow-python: {cfg.source} names no Python model; the option has no effect")
        return
    trusted = {Path(p).expanduser().resolve() for p in allowed}
    if code.resolve() not in trusted:
        raise Fail(
            EXIT_USAGE,
            f"{cfg.source}: model.python names {code}; loading it runs that file's Python code "
            "with your permissions, which lrp does only when you allow that file explicitly. "
            f"If you trust it, add: --allow-python {shlex.quote(str(code))}",
        )


def preset_name(name: str, option: str = "--composite") -> str:
    """``name`` if it is a rule preset; otherwise a usage error suggesting the closest one."""
    if name not in PRESETS:
        raise Fail(
            EXIT_USAGE,
            f"{option} {name!r}: unknown preset{did_you_mean(name, PRESETS)}; choose one of: "
            f"{', '.join(PRESETS)} (custom rule maps go in the config's rules section)",
        )
    return name


def load_cli_model(cfg: Config, device: torch.device | str) -> LoadedModel:
    """The config's model on ``device``; failures exit with status 3 saying why."""
    try:
        return load_model(cfg.model, device)
    except ModelLoadError as exc:
        raise Fail(EXIT_MODEL, f"could not load the model: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - anything else while building it
        raise Fail(EXIT_MODEL, f"could not load the model ({type(exc).__name__}: {exc})") from None


def make_explainer(loaded: LoadedModel, cfg: Config, rules: str | dict[str, Any] | None = None) -> Explainer:
    """An :class:`Explainer` for ``rules`` (default: the config's) with the config's rule options."""
    composite = (cfg.composite or cfg.rules) if rules is None else rules
    try:
        return Explainer(loaded.module, composite, ignore_bias=cfg.ignore_bias, **cfg.composite_options())
    except UnsupportedOpError as exc:
        raise Fail(EXIT_MODEL, f"this model cannot be explained by lrpcli: {exc}") from None
    except (ValueError, TypeError) as exc:
        raise Fail(EXIT_USAGE, f"{cfg.source}: rules: {exc}") from None


def stdin_is_tty() -> bool:
    """Whether standard input is a terminal (then no paths are read from it)."""
    return isatty(sys.stdin)


def input_paths(paths: list[str], command: str) -> list[str]:
    """``paths``, or ``-`` (standard input) when none are given and standard input is not a terminal."""
    if paths:
        return paths
    if stdin_is_tty():
        raise Fail(
            EXIT_USAGE,
            "no input paths; give image files, folders or glob patterns, or - to read paths "
            f"from standard input (see lrp {command} --help)",
        )
    return ["-"]


def discover_inputs(
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
        raise Fail(EXIT_USAGE, str(exc)) from None
    except OSError as exc:
        raise Fail(EXIT_USAGE, f"cannot read the input paths: {exc}") from None
    named = [p for p in paths if p != "-" and os.path.isfile(p)]
    inputs, dropped = drop_previous_outputs(inputs, out, keep=named, ours=is_our_png)
    if check_outputs is not None:
        inputs = check_outputs(inputs, named)
    if dropped:
        warn(
            console,
            f"skipped {len(dropped)} picture(s) lrpcli wrote earlier (heatmaps, overlays, grids; "
            "name one explicitly to explain it anyway)",
        )
    if not inputs:
        named_here = " ".join("standard input" if p == "-" else p for p in paths)
        raise Fail(EXIT_USAGE, f"no image files found in: {named_here}")
    return inputs


def resolve_device(choice: DeviceChoice) -> torch.device:
    """``auto`` → CUDA when available, else CPU; ``cuda`` without a CUDA device is a usage error."""
    if choice is DeviceChoice.auto:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if choice is DeviceChoice.cuda and not torch.cuda.is_available():
        raise Fail(
            EXIT_USAGE,
            "--device cuda: no CUDA device is available to PyTorch here; use --device cpu or auto",
        )
    return torch.device(choice.value)
