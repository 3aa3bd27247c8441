"""``lrp --version`` and ``python -m lrpcli``."""

from __future__ import annotations

import subprocess
import sys


from conftest import lrp
from lrpcli import __version__


def test_version_and_module_entry_point() -> None:
    assert lrp("--version").stdout.strip() == f"lrpcli {__version__}"
    proc = subprocess.run(
        [sys.executable, "-m", "lrpcli", "explain", "--help"], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0
    for option in ("--config", "--out", "--composite", "--target", "--top-k", "--batch-size", "--workers",
                   "--device", "--json", "--jsonl", "--quiet", "--overwrite", "--fail-fast", "--null",
                   "--save-npy", "--cmap", "--max-pixels"):
        assert option in proc.stdout
