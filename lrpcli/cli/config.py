"""``lrp config check``: validate a config and print the resolved one."""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from rich.text import Text

from lrpcli.cli.app import config_app
from lrpcli.cli.command import Command, examples
from lrpcli.cli.errors import EXIT_USAGE, error, stderr_console
from lrpcli.config.builtin import BUILTIN_CONFIGS

__all__ = ["config_check"]

EXAMPLES = examples(
    ("Validate your config; prints it resolved, every default filled in", "lrp config check my.yaml"),
    ("Start a config of your own from a built-in one", "lrp config check vgg16 > my.yaml"),
)


@config_app.command("check", cls=Command, epilog=EXAMPLES)
def config_check(
    file: Annotated[
        str,
        typer.Argument(
            metavar="FILE", help=f"Config file to validate (or a built-in name: {', '.join(BUILTIN_CONFIGS)})."
        ),
    ],
) -> None:
    """Validate a config and print the resolved one (all defaults filled in) as YAML."""
    from lrpcli.config import ConfigError, load_config  # these import torch: not for --help

    console = stderr_console()
    try:
        cfg = load_config(file)
    except ConfigError as exc:
        error(console, str(exc))
        raise typer.Exit(EXIT_USAGE) from None
    sys.stdout.write(f"# resolved from {cfg.source}\n# sha256: {cfg.digest()}\n")
    sys.stdout.write(cfg.to_yaml())
    sys.stdout.flush()
    console.print(Text.assemble(("ok ", "green"), f"{cfg.source} is valid"))
