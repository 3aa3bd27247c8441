"""Exit codes, the usage/model failure every command raises, and the consoles messages go to.

Standard output carries only results; progress, logs, warnings and errors go to standard
error, without colour when it is not a terminal or ``NO_COLOR`` is set.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any, NoReturn

import typer
from rich.console import Console
from rich.text import Text

from lrpcli.cli.pipes import silence_stdout

__all__ = [
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_MODEL",
    "EXIT_OK",
    "EXIT_USAGE",
    "Fail",
    "error",
    "exit_with",
    "isatty",
    "stderr_console",
    "stdout_console",
    "warn",
]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_MODEL = 3
EXIT_INTERRUPTED = 130


class Fail(Exception):
    """Print ``message`` as an error and exit with ``code``."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def isatty(stream: Any) -> bool:
    """Whether ``stream`` is a terminal (False for anything without a working ``isatty``)."""
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def _no_color(stream: Any) -> bool:
    """No colour on ``stream``: ``NO_COLOR`` is set or it is not a terminal."""
    return bool(os.environ.get("NO_COLOR")) or not isatty(stream)


def stderr_console() -> Console:
    """Standard error; colour only on a terminal without ``NO_COLOR``."""
    stream = sys.stderr
    tty = isatty(stream)
    return Console(
        file=stream,
        no_color=_no_color(stream),
        highlight=False,
        soft_wrap=True,
        force_terminal=tty,
        color_system="auto" if tty and not os.environ.get("NO_COLOR") else None,
    )


class _StdoutConsole(Console):
    """A console on standard output whose closed pipe ends the command with status 0
    (:class:`lrpcli.cli.command.Group`), not Rich's status 1."""

    def on_broken_pipe(self) -> None:
        self.quiet = True
        silence_stdout()
        raise BrokenPipeError


def stdout_console() -> Console:
    """Standard output, for the listing commands' tables."""
    stream = sys.stdout
    return _StdoutConsole(file=stream, no_color=_no_color(stream), highlight=False, soft_wrap=True)


def error(console: Console, message: str) -> None:
    """Print ``error: message``."""
    console.print(Text.assemble(("error: ", "bold red"), message))


def warn(console: Console, message: str) -> None:
    """Print ``warning: message``."""
    console.print(Text.assemble(("warning: ", "yellow"), message))


def exit_with(console: Console, work: Callable[[], int]) -> NoReturn:
    """Run a command's ``work`` and exit with its code; a :class:`Fail` or an interrupt is printed as an error."""
    try:
        code = work()
    except Fail as fail:
        error(console, fail.message)
        code = fail.code
    except KeyboardInterrupt:
        error(console, "interrupted")
        code = EXIT_INTERRUPTED
    raise typer.Exit(code)
