"""``lrp composites``: the rule presets, the rules they assign, and the rules a custom map may use."""

from __future__ import annotations

from rich.text import Text

from lrpcli.cli.app import app
from lrpcli.cli.errors import stdout_console
from lrpcli.core.composites import PRESETS, get_composite
from lrpcli.core.rules import AFFINE_RULES, rule_params

__all__ = ["composites"]


@app.command()
def composites() -> None:
    """List the rule presets, the rules they assign, and the rules a custom map may use."""
    console = stdout_console()
    for name, found in PRESETS.items():
        console.print(Text(name, style="bold"))
        console.print(f"  {found.description}", markup=False)
        for selector, rule in get_composite(name).describe().items():
            console.print(f"    {selector:<22} {rule}", markup=False)
        console.print()
    console.print(Text("Rules for a custom rules: map (rule: NAME plus parameters)", style="bold"))
    for name, cls in sorted(AFFINE_RULES.items()):
        params = rule_params(name)
        doc = (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else ""
        console.print(f"  {name:<12} {', '.join(params) or '-':<28} {doc}", markup=False)
    console.print()
    console.print(
        "Selectors: first, last, conv, linear, a module class name (Conv2d), or a module-name glob "
        "(features.2*); 'preset: NAME' starts from a preset.",
        markup=False,
    )
