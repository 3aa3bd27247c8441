"""The Typer command and group classes every ``lrp`` command uses, and its ``Examples`` block.

Typer 0.29's Rich help prints a value placeholder for every parameter: ``<bool>`` beside a flag
that takes no value (its plain-text help leaves flags out) and ``<list[str]>`` beside an argument
whose metavar (``PATHS``) is already its name. :class:`Command` and :class:`Group` show nothing
there instead; options with a metavar keep it (``--out DIR``). They also give ``--help`` the
default ``False``: with Typer's ``None``, every ``--help`` not given (the group's, in
``lrp explain --help``) is coerced through pydantic, whose import is a third of the start-up.

Imports nothing heavy: ``lrp --help`` must not import torch.
"""

from __future__ import annotations

from typing import Any

from lrpcli.cli.pipes import closed_stdout_exit

from typer import Exit
from rich.markup import escape
from typer.core import TyperArgument, TyperCommand, TyperGroup, TyperOption

__all__ = ["Command", "Group", "example_lines", "examples"]

EXAMPLES_TITLE = "Examples"


class _NamedArgument(TyperArgument):
    """An argument with a metavar: the help's name column shows it, the type column nothing."""

    def display_type_rich(self, ctx: Any) -> str | None:
        return None


def _without_placeholders(params: list[Any]) -> list[Any]:
    """``params`` with no value placeholder for flags and named arguments (changed in place)."""
    for param in params:
        if isinstance(param, TyperOption) and param.is_flag and param.metavar is None:
            param.metavar = ""
        elif type(param) is TyperArgument and param.metavar:
            param.__class__ = _NamedArgument
    return params


def _flag_default(option: Any) -> Any:
    """The help option with the default ``False`` a flag has (Typer leaves it ``None``)."""
    if option is not None and option.default is None:
        option.default = False
    return option


class Command(TyperCommand):
    """An ``lrp`` command: help without ``<bool>`` / ``<list[str]>`` placeholders."""

    def get_params(self, ctx: Any) -> list[Any]:
        return _without_placeholders(super().get_params(ctx))

    def get_help_option(self, ctx: Any) -> Any:
        return _flag_default(super().get_help_option(ctx))


class Group(TyperGroup):
    """The ``lrp`` group and its subgroups (``config``): help as in :class:`Command`; a reader
    closing standard output (``lrp models | head -1``) ends any command quietly with status 0."""

    def get_params(self, ctx: Any) -> list[Any]:
        return _without_placeholders(super().get_params(ctx))

    def get_help_option(self, ctx: Any) -> Any:
        return _flag_default(super().get_help_option(ctx))

    def invoke(self, ctx: Any) -> Any:
        with closed_stdout_exit(Exit):
            return super().invoke(ctx)


def examples(*items: tuple[str, str]) -> str:
    """A command's ``epilog``: an ``Examples`` block of ``(what it does, command line)`` pairs.

    Each command line is shown indented under its description (Rich markup escaped).
    """
    lines = [f"[bold]{EXAMPLES_TITLE}[/bold]"]
    for what, command in items:
        lines += [f"  {escape(what)}", f"    {escape(command)}"]
    return "\n".join(lines)


def example_lines(epilog: str | None) -> list[str]:
    """The command lines of an :func:`examples` block (for tests: every example must parse)."""
    lines = (epilog or "").splitlines()
    return [line.strip().replace("\\[", "[") for line in lines if line.startswith("    ")]
