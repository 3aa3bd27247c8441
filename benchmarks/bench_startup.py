"""Start-up of the ``lrp`` command: median wall and CPU time of fresh processes running
``--version`` and ``--help`` (the root's and some commands'), and whether each imported torch.

``--tree DIR`` (repeatable) also times other copies of the package, e.g. the last commit
unpacked with ``git archive HEAD lrpcli | tar -x -C /tmp/head``; the trees run interleaved
(A B A B ...) so that they see the same machine load. Usage::

    python benchmarks/bench_startup.py [--runs 7] [--tree /tmp/head]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: runs ``lrp ARGS`` in a fresh interpreter; exit status 10 + 1 if torch was imported
PROBE = (
    "import sys; sys.argv = ['lrp'] + sys.argv[1:]\n"
    "from lrpcli.cli import main\n"
    "try:\n    main()\nexcept SystemExit as exc:\n    code = exc.code or 0\n"
    "sys.exit(10 + ('torch' in sys.modules) if code == 0 else code)\n"
)
CASES = (["--version"], ["--help"], ["explain", "--help"], ["inspect", "--help"], ["config", "check", "--help"])


def run_once(tree: Path, args: list[str]) -> tuple[float, float, bool]:
    """Wall seconds, CPU seconds and whether torch was imported, for one fresh process."""
    env = dict(os.environ, COLUMNS="100", PYTHONPATH=str(tree))
    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-c", PROBE, *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env=env, cwd="/",
    )  # fmt: skip
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    code = os.waitstatus_to_exitcode(status)
    if code not in (10, 11):
        raise SystemExit(f"lrp {' '.join(args)} in {tree} exited with {code}")
    return wall, usage.ru_utime + usage.ru_stime, code == 11


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=7, help="fresh processes per case and tree")
    parser.add_argument("--tree", type=Path, action="append", default=[], help="another copy of the package")
    options = parser.parse_args()
    trees = [ROOT, *options.tree]
    times: dict[tuple[Path, str], list[tuple[float, float, bool]]] = {}
    for _ in range(options.runs):
        for args in CASES:
            for tree in trees:
                times.setdefault((tree, " ".join(args)), []).append(run_once(tree, args))
    for (tree, case), runs in times.items():
        walls = [w for w, _, _ in runs]
        cpus = [c for _, c, _ in runs]
        torch = "imports torch" if any(t for _, _, t in runs) else "no torch"
        print(
            f"{str(tree):<24} lrp {case:<22} wall median {statistics.median(walls):.3f} s "
            f"(min {min(walls):.3f})  cpu median {statistics.median(cpus):.3f} s  {torch}  n={len(runs)}"
        )


if __name__ == "__main__":
    main()
