"""``lrp composites``: the rule presets, the rules they assign, and the rules a custom map may use."""

from __future__ import annotations

from rich.text import Text

from lrpcli.cli.app import app
from lrpcli.cli.command import Command, examples
from lrpcli.cli.errors import stdout_console

__all__ = ["composites", "plain_text"]

EXAMPLES = examples(
    ("The presets and the rules a custom rules: map may use", "lrp composites"),
    ("Explain with one of the presets instead of the config's rules", "lrp explain photos/ --composite epsilon_gamma_box -o heatmaps-egb"),
    ("See which layer gets which rule under it", "lrp inspect --model vgg16 --composite epsilon_gamma_box"),
)


@app.command(cls=Command, epilog=EXAMPLES)
def composites() -> None:
    """List the rule presets, the rules they assign, and the rules a custom map may use."""
    from lrpcli.core.composites import PRESETS, get_composite  # these import torch: not for --help
    from lrpcli.core.rules import AFFINE_RULES, rule_params

    console = stdout_console()
    for name, found in PRESETS.items():
        console.print(Text(name, style="bold"))
        console.print(f"  {found.description}", markup=False)
        for selector, rule in get_composite(name).describe().items():
            console.print(f"    {selector:<22} {rule}", markup=False)
        console.print()
    console.print(Text("Rules for a custom rules: map (rule: NAME plus parameters)", style="bold"))
    params = {name: ", ".join(rule_params(name)) or "-" for name in AFFINE_RULES}
    width = max(len(text) for text in params.values())
    for name, cls in sorted(AFFINE_RULES.items()):
        doc = (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else ""
        console.print(Text.assemble(f"  {name:<12} {params[name]:<{width}}  ", plain_text(doc)))
    console.print()
    console.print(
        "Selectors: first, last, conv, linear, a module class name (Conv2d), or a module-name glob "
        "(features.2*); 'preset: NAME' starts from a preset.",
        markup=False,
    )


def plain_text(doc: str) -> Text:
    """A docstring line for the terminal: RST ``code`` spans without their backticks, in cyan."""
    text = Text()
    for k, part in enumerate(doc.split("``")):
        text.append(part, style="cyan" if k % 2 else "")
    return text
