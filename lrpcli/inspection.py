"""What `lrp inspect` shows: every graph step with its rule and why, and the canonizations applied."""

from __future__ import annotations

from collections import Counter
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from .engine import Explainer

KIND_TITLES = {
    "affine": "conv/dense layers (composite rules)",
    "frozen": "LayerNorm/GroupNorm/attention (σ or weights held constant)",
    "norm": "sum nodes (additions, average pooling, means)",
    "gate": "signal × gate products",
    "pass": "element-wise (relevance passes)",
    "move": "data movement and max pooling",
    "select": "picks from multi-output nodes",
    "input": "input",
}


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
        console.print(f"  {count:>5}  {KIND_TITLES.get(kind, kind)}", markup=False)
    console.print(Text("Rules on conv/dense layers", style="bold"))
    for rule, count in data["summary"]["affine_rules"].items():
        console.print(f"  {count:>5}  {rule}", markup=False)
