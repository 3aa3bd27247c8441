"""The ``lrp`` command line: ``explain``, ``audit``, ``evaluate``, ``inspect``, ``models``,
``composites``, ``config check``.

Standard output carries only results (``--json``: the report; ``--jsonl``: one object per
image; the listing commands' tables). Progress, logs, warnings and errors go to standard
error, without colour when it is not a terminal or ``NO_COLOR`` is set.

Exit codes: 0 all images explained; 1 some images failed (the report is still complete);
2 usage or config error; 3 the model could not be loaded; 130 interrupted (SIGINT/SIGTERM:
the report covers the images that finished).

Modules: :mod:`~lrpcli.cli.app` (the root app), :mod:`~lrpcli.cli.command` (the command
classes and their Examples blocks), :mod:`~lrpcli.cli.errors` (exit codes,
consoles), :mod:`~lrpcli.cli.options` (shared option types), :mod:`~lrpcli.cli.loading`
(config, model, explainer, inputs, device); one module per command: :mod:`~lrpcli.cli.explain`
(with :mod:`~lrpcli.cli.explain_run`, :mod:`~lrpcli.cli.explain_output` and
:mod:`~lrpcli.cli.explain_scale`), :mod:`~lrpcli.cli.merge`,
:mod:`~lrpcli.cli.audit` (with :mod:`~lrpcli.cli.audit_run`), :mod:`~lrpcli.cli.evaluate` (with :mod:`~lrpcli.cli.evaluate_run`), :mod:`~lrpcli.cli.inspect`,
:mod:`~lrpcli.cli.models`, :mod:`~lrpcli.cli.composites`, :mod:`~lrpcli.cli.config`.
Importing this package registers every command on ``app``; it does not import torch (the
command modules import it inside their command functions), so ``--help`` and ``--version``
start in a fraction of a second (``tests/cli/test_startup.py``).
"""

from __future__ import annotations

# Importing a command module registers its commands, in this order in ``lrp --help``.
from lrpcli.cli import explain, merge, audit, evaluate, tune, models, composites, inspect, config  # noqa: F401, I001
from lrpcli.cli.app import app, main
from lrpcli.cli.errors import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_MODEL, EXIT_OK, EXIT_USAGE

__all__ = [
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_MODEL",
    "EXIT_OK",
    "EXIT_USAGE",
    "app",
    "main",
]
