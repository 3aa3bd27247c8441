"""The root ``lrp`` Typer app (``--version``, the ``config`` group) and the console-script entry point.

Command modules register themselves on :data:`app`; :mod:`lrpcli.cli` imports them all.
"""

from __future__ import annotations

from typing import Annotated

import typer

from lrpcli import __version__
from lrpcli.run.allocator import tune_allocator

__all__ = ["app", "config_app", "main"]

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
