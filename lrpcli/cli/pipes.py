"""Standard output closed by its reader (``lrp models | head -1``): stop quietly, as Unix tools do.

Click turns a broken pipe into exit status 1, which ``lrp`` reserves for "some images failed".
:func:`closed_stdout_exit` makes it 0, with nothing on standard error.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["closed_stdout_exit", "silence_stdout"]


def silence_stdout() -> None:
    """Send further standard output nowhere (also the interpreter's flush at exit)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass


@contextmanager
def closed_stdout_exit(exit_with: Callable[[int], Any]) -> Iterator[None]:
    """Run the body; on a broken pipe silence standard output and raise ``exit_with(0)``."""
    try:
        yield
    except BrokenPipeError:
        silence_stdout()
        raise exit_with(0) from None
