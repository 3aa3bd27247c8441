"""The commands that describe rather than run: ``models``, ``composites``, ``inspect`` and
``config check``. Their listings go to standard output, errors to standard error.
"""

from __future__ import annotations

import difflib
import json
import sys
from inspect import signature
from pathlib import Path
from typing import Annotated, Any

import torch
import typer
from rich.table import Table
from rich.text import Text

from lrpcli import PRESETS, get_composite
from lrpcli.cli.common import (
    EXIT_USAGE,
    AllowPythonOption,
    CompositeOption,
    ConfigOption,
    JsonOption,
    _check_python_allowed,
    _error,
    _Fail,
    _load_config,
    _load_model,
    _make_explainer,
    _preset_name,
    _stderr_console,
    _stdout_console,
    app,
    config_app,
)
from lrpcli.config import BUILTIN_CONFIGS, ConfigError, load_config
from lrpcli.inspection import inspect_explainer, print_inspection
from lrpcli.models.registry import (
    EMBEDDED_MODELS,
    WEIGHT_FILE_SUFFIXES,
    cached_weights_path,
    torchvision_classifiers,
    torchvision_weights,
    weight_names,
)
from lrpcli.rules import AFFINE_RULES

__all__ = ["composites", "config_check", "inspect", "models"]


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
    for name, cls in sorted(AFFINE_RULES.items()):
        params = [p for p in signature(cls.__init__).parameters if p != "self"]
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
    config: ConfigOption = None,
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            "-m",
            metavar="NAME",
            help="Inspect this model instead of the config's: an embedded name or a torchvision "
            "architecture (built with random weights; see lrp models).",
        ),
    ] = None,
    composite: CompositeOption = None,
    all_steps: Annotated[
        bool, typer.Option("--all", help="Also list element-wise and data-movement steps.")
    ] = False,
    json_out: JsonOption = False,
    allow_python: AllowPythonOption = None,
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


def _model_override(name: str) -> dict[str, Any]:
    """The config's ``model`` section for ``--model NAME`` (torchvision models without weights)."""
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
