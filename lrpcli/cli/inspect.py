"""``lrp inspect``: which rule every layer gets under the composite, and why, plus the canonizations."""

from __future__ import annotations

import difflib
import json
import sys
from collections import Counter
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from lrpcli.cli.app import app
from lrpcli.cli.command import Command, examples
from lrpcli.cli.errors import EXIT_USAGE, Fail, error, stderr_console, stdout_console
from lrpcli.cli.options import AllowPythonOption, CompositeOption, ConfigOption, JsonOption, SeedOption

if TYPE_CHECKING:
    from lrpcli.core.engine import Explainer

__all__ = ["inspect", "inspect_explainer", "print_inspection"]

EXAMPLES = examples(
    ("The built-in config: EfficientNet-Lite0 and the rules lrp tune chose", "lrp inspect"),
    ("A torchvision architecture (random weights) under a preset", "lrp inspect --model resnet18 --composite epsilon_gamma_box"),
    ("Every step of your config's model, as JSON", "lrp inspect -c my.yaml --all --json"),
)


@app.command(cls=Command, epilog=EXAMPLES)
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
    seed: SeedOption = None,
) -> None:
    """Show which rule every layer gets under the composite, and why, plus the canonizations applied."""
    from lrpcli.cli.loading import check_python_allowed, load_cli_config, load_cli_model, make_explainer, preset_name
    from lrpcli.models.sources import describe  # these import torch: not for --help

    console = stderr_console()
    try:
        overrides: dict[str, Any] = {}
        if composite is not None:
            overrides["rules"] = preset_name(composite)
        if model is not None:
            overrides.update(_model_overrides(model))
        cfg = load_cli_config(config, overrides, seed=seed)
        check_python_allowed(console, cfg, list(allow_python or []))
        explainer = make_explainer(load_cli_model(cfg, "cpu"), cfg)
    except Fail as fail:
        error(console, fail.message)
        raise typer.Exit(fail.code) from None
    data = inspect_explainer(explainer)
    data = {"model": describe(cfg.model), "config": cfg.source, "composite": cfg.composite_name, **data}
    if json_out:
        sys.stdout.write(json.dumps(data, indent=2) + "\n")
        return
    title = f"{describe(cfg.model)} under {cfg.composite_name}"
    out = stdout_console()
    if not out.is_terminal:
        out.width = 200  # a file or pipe: keep table rows on one line
    print_inspection(out, data, title, all_steps=all_steps)


def _model_overrides(name: str) -> dict[str, Any]:
    """The config overrides for ``--model NAME``: its ``model`` section (torchvision models without
    weights) and no ``preprocess`` section, so the model gets its own default preprocessing (a
    torchvision model ImageNet's) rather than the config's, which is for the config's model."""
    from lrpcli.models.registry import EMBEDDED_MODELS, torchvision_classifiers

    if name in EMBEDDED_MODELS:
        return {"model": {"embedded": name}, "preprocess": None}
    if name in torchvision_classifiers():
        return {"model": {"torchvision": name, "weights": "none"}, "preprocess": None}
    close = difflib.get_close_matches(name, list(EMBEDDED_MODELS) + list(torchvision_classifiers()), n=3)
    hint = f" (did you mean {', '.join(close)}?)" if close else ""
    raise Fail(EXIT_USAGE, f"--model {name!r}: unknown model{hint}; lrp models lists them")


def inspect_explainer(explainer: Explainer) -> dict[str, Any]:
    """Plain data: the rule table, canonizations and counts (the ``--json`` document's core)."""
    rows = explainer.rule_table()
    kinds = Counter(r["kind"] for r in rows)
    rules = Counter(r["rule"] for r in rows if r["kind"] == "affine")
    return {
        "rules": explainer.composite.describe(),
        "ignore_bias": explainer.ignore_bias,
        "steps": rows,
        "canonizations": list(explainer.program.canonizations),
        "summary": {"steps": len(rows), "by_kind": dict(kinds), "affine_rules": dict(rules)},
    }


def print_inspection(console: Console, data: dict[str, Any], title: str, *, all_steps: bool) -> None:
    """A Rich table of the steps (every step with ``all_steps``, else those with a rule of their own)."""
    from lrpcli.core.program import StepKind

    table = Table(title=title, title_justify="left", header_style="bold", box=None, padding=(0, 2, 0, 0))
    for col in ("#", "module (graph node)", "op", "rule", "why", "canonization"):
        table.add_column(col, overflow="fold")
    shown = 0
    for k, row in enumerate(data["steps"]):
        if not all_steps and row["kind"] in ("pass", "move", "select", "input"):
            continue
        where = row["module"] if row["module"] and row["kind"] == "affine" else f"{row['module'] or ''} ({row['step']})"
        table.add_row(str(k), where, row["op"], row["rule"], row["why"], row["canonization"])
        shown += 1
    console.print(table)
    hidden = len(data["steps"]) - shown
    if hidden:
        console.print(Text(f"({hidden} element-wise / data-movement steps hidden; --all shows them)", style="dim"))
    console.print()
    console.print(Text("Canonizations applied", style="bold"))
    for note in data["canonizations"] or ["none"]:
        console.print(f"  {note}", markup=False)
    console.print()
    console.print(Text("Steps by kind", style="bold"))
    for kind, count in sorted(data["summary"]["by_kind"].items(), key=lambda kv: -kv[1]):
        console.print(f"  {count:>5}  {StepKind(kind).title}", markup=False)
    console.print(Text("Rules on conv/dense layers", style="bold"))
    for rule, count in data["summary"]["affine_rules"].items():
        console.print(f"  {count:>5}  {rule}", markup=False)
