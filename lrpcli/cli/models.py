"""``lrp models``: the model sources a config can name, and which torchvision weights are cached."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from rich.console import Console
from rich.table import Table
from rich.text import Text

from lrpcli.cli.app import app
from lrpcli.cli.command import Command, examples
from lrpcli.cli.errors import stdout_console

__all__ = ["models"]

EXAMPLES = examples(
    ("Every model source, architecture and weights name (* = cached, works offline)", "lrp models"),
    ("The ResNets only", "lrp models | grep resnet"),
    ("Which rule each layer of a listed architecture gets (built with random weights)", "lrp inspect --model resnet50"),
)


@app.command(cls=Command, epilog=EXAMPLES)
def models() -> None:
    """List the model sources a config can name (and which torchvision weights are cached)."""
    import torch  # not for --help

    from lrpcli.models.registry import EMBEDDED_MODELS, torchvision_classifiers, torchvision_weights, weight_names
    from lrpcli.models.weights import WEIGHT_FILE_SUFFIXES, cached_weights_path

    console = stdout_console()
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
    _source(
        console,
        f"file: PATH ({'/'.join(WEIGHT_FILE_SUFFIXES)}) + arch: NAME (any name above) + num_classes: N [+ classes: FILE]",
        "a local state dict; .pth/.pt files are read with torch.load(weights_only=True), so pickled Python "
        "objects are refused",
    )
    _source(
        console,
        "timm: NAME + file: CHECKPOINT [+ num_classes: N] [+ classes: FILE]   (" + _installed("timm") + ")",
        "a timm architecture with a local .pth/.safetensors checkpoint; preprocessing from timm's pretrained "
        "config; names: python -c \"import timm; print(timm.list_models())\"",
    )
    _source(
        console,
        "huggingface: FOLDER [+ classes: FILE]   (" + _installed("transformers") + ")",
        "a transformers *ForImageClassification model saved with save_pretrained (config.json, "
        "model.safetensors); preprocessing from its preprocessor_config.json, class names from id2label",
    )
    _source(
        console,
        "python: FILE.py:ClassName + weights: FILE [+ num_classes: N] [+ classes: FILE] [+ kwargs: {...}]",
        "your own nn.Module; its file runs as Python code, so lrp explain needs --allow-python FILE",
    )


def _source(console: Console, title: str, text: str) -> None:
    """One model source: its config form in bold, then what it is."""
    console.print()
    console.print(Text(title, style="bold"))
    console.print(f"  {text}", markup=False)


def _installed(package: str) -> str:
    """Whether an optional package is importable (without importing it)."""
    extra = {"transformers": "huggingface"}.get(package, package)
    if importlib.util.find_spec(package) is not None:
        return f"{package} installed"
    return f"needs {package}: pip install 'lrpcli[{extra}]'"
