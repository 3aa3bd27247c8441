"""Start-up and help of every command: no torch import for ``--help`` / ``--version``, an
``Examples`` block whose command lines parse, no ``<bool>`` / ``<list[str]>`` placeholders."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from typing import Any

import pytest
import typer

from conftest import lrp
from lrpcli.cli import app
from lrpcli.cli.command import Command, Group, example_lines

CLICK_APP = typer.main.get_command(app)


def commands(group: Any = CLICK_APP, prefix: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any]]:
    """Every command and group of ``lrp`` with its name path (the root is ``()``)."""
    found = [(prefix, group)]
    for name, command in getattr(group, "commands", {}).items():
        found += commands(command, prefix + (name,))
    return found


ALL = commands()
HELP_ARGS = [list(path) + ["--help"] for path, _ in ALL] + [["--version"]]

STARTUP = """
import json, sys
from typer.testing import CliRunner
from lrpcli.cli import app
out = {}
for args in json.loads(sys.argv[1]):
    result = CliRunner().invoke(app, args)
    out[" ".join(args)] = [result.exit_code, "torch" in sys.modules, len(result.stdout), "ray" in sys.modules]
print(json.dumps(out))
"""


def test_every_command_is_listed() -> None:
    names = {" ".join(path) for path, _ in ALL}
    assert {"", "explain", "merge", "audit", "evaluate", "tune", "inspect", "models", "composites", "config", "config check"} <= names


def test_help_and_version_do_not_import_torch() -> None:
    """In one fresh process, each ``--help`` and ``--version`` in turn: none imports torch or ray."""
    proc = subprocess.run(
        [sys.executable, "-c", STARTUP, json.dumps(HELP_ARGS)], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    results = json.loads(proc.stdout)
    assert set(results) == {" ".join(a) for a in HELP_ARGS}
    for args, (code, torch_loaded, printed, ray_loaded) in results.items():
        assert code == 0 and printed > 0, args
        assert not torch_loaded, f"lrp {args} imported torch"
        assert not ray_loaded, f"lrp {args} imported ray (only --backend ray may)"


def test_the_check_sees_torch_when_it_is_imported() -> None:
    """The same probe reports torch once a command that needs it ran (so it can fail)."""
    proc = subprocess.run(
        [sys.executable, "-c", STARTUP, json.dumps([["composites"]])], capture_output=True, text=True, timeout=120
    )
    assert json.loads(proc.stdout)["composites"][:2] == [0, True]


def test_torch_free_name_lists_match_the_torch_modules() -> None:
    from lrpcli.config.builtin import BUILTIN_CONFIGS, builtin_config_path
    from lrpcli.core.composites import PRESETS
    from lrpcli.core.preset_names import PRESET_NAMES

    assert PRESET_NAMES == tuple(PRESETS)
    assert all(builtin_config_path(name).is_file() for name in BUILTIN_CONFIGS)


@pytest.mark.parametrize("path", [p for p, _ in ALL], ids=lambda p: " ".join(p) or "lrp")
def test_help_ends_with_examples_that_parse(path: tuple[str, ...]) -> None:
    command = dict(ALL)[path]
    assert isinstance(command, (Command, Group)), f"lrp {' '.join(path)} does not use lrpcli.cli.command"
    result = lrp(*path, "--help", env={"COLUMNS": "200"})
    assert result.exit_code == 0
    text = result.stdout
    assert "<bool>" not in text and "<list[" not in text, text
    assert "Examples" in text.rsplit("╰", 1)[-1], "no Examples block after the options"
    lines = example_lines(command.epilog)
    assert 2 <= len(lines) <= 4, lines
    for line in lines:
        assert line in text
        parse_example(line)


def parse_example(line: str) -> None:
    """Parse an example's ``lrp`` command line as the CLI would (options, values, choices), without
    running it: the part of a pipeline that runs ``lrp``, up to a ``>`` redirection."""
    parts = [shlex.split(part) for part in line.split("|")]
    words = next((w for w in parts if w[:1] == ["lrp"]), None)
    assert words is not None, f"{line}: no lrp command"
    if ">" in words:
        words = words[: words.index(">")]
    if words[1:2] == ["--help"] or words[2:3] == ["--help"]:
        return
    ctx = CLICK_APP.make_context("lrp", words[1:])
    command: Any = CLICK_APP
    rest = ctx._protected_args + ctx.args
    while hasattr(command, "commands"):
        name, command, rest = command.resolve_command(ctx, rest)
        ctx = command.make_context(name, rest, parent=ctx)
        rest = ctx._protected_args + ctx.args
    assert not rest, f"{line}: unexpected arguments {rest}"


@pytest.mark.parametrize(
    "bad",
    [
        "lrp explain photos/ --no-such-option",
        "lrp evaluate photos/ --order sideways",
        "lrp nothing",
        "lrp config check",
        "lrp composites extra",
    ],
)
def test_parse_example_catches_bad_lines(bad: str) -> None:
    with pytest.raises((typer.exceptions.TyperException, AssertionError)):
        parse_example(bad)
