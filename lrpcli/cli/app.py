"""The root ``lrp`` Typer app (``--version``, the ``config`` group) and the console-script entry point.

Command modules register themselves on :data:`app`; :mod:`lrpcli.cli` imports them all.
"""

from __future__ import annotations

from typing import Annotated

import typer

from lrpcli import __version__
from lrpcli.cli.command import Group, examples
from lrpcli.run.allocator import tune_allocator

__all__ = ["app", "config_app", "main"]

app = typer.Typer(
    name="lrp",
    help="Layer-wise Relevance Propagation heatmaps for image classifiers.",
    cls=Group,
    epilog=examples(
        ("Heatmaps for every image in a folder (the built-in EfficientNet-Lite0)", "lrp explain photos/ -o heatmaps"),
        ("Which rule every layer of a model gets", "lrp inspect --model resnet18"),
        ("How faithful the maps are (pixel flipping)", "lrp evaluate photos/ -o evaluation"),
        ("Help on one command", "lrp explain --help"),
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
config_app = typer.Typer(
    help="Work with YAML config files.",
    cls=Group,
    epilog=examples(
        ("Validate a config and print it resolved", "lrp config check my.yaml"),
        ("Print a built-in config, every default filled in", "lrp config check vgg16"),
    ),
    no_args_is_help=True,
    add_completion=False,
)
app.add_typer(config_app, name="config")


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
