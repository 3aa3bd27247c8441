"""Options several commands share, as ``Annotated`` Typer types (one help text each)."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from lrpcli.config.builtin import BUILTIN_CONFIGS
from lrpcli.core.preset_names import PRESET_NAMES

__all__ = [
    "AllowPythonOption",
    "CompositeOption",
    "ConfigOption",
    "DeviceChoice",
    "DeviceOption",
    "JsonOption",
    "OutOption",
    "OverwriteOption",
    "PathsArgument",
    "QuietOption",
    "SeedOption",
]


class DeviceChoice(str, Enum):
    """Where the model runs."""

    cpu = "cpu"
    cuda = "cuda"
    auto = "auto"


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
        f"config (EfficientNet-Lite0, rules chosen by lrp tune). Built-in names: {', '.join(BUILTIN_CONFIGS)}.",
        show_default=False,
    ),
]
CompositeOption = Annotated[
    str | None,
    typer.Option(
        "--composite",
        metavar="NAME",
        help=f"Use this rule preset instead of the config's rules: {', '.join(PRESET_NAMES)}.",
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
SeedOption = Annotated[
    int | None,
    typer.Option(
        "--seed",
        metavar="N",
        help="Seed of the random initialisation of a model built without weights "
        "(torchvision weights: none); overrides the config's model.seed (default 0).",
        show_default=False,
    ),
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
