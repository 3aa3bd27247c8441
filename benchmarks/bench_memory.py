"""Peak memory of `lrp explain` over 200 versus 2,000 images: it must not grow with the count.

Each run is a fresh `python -m lrpcli explain FOLDER` subprocess; its peak resident set size
(max RSS) comes from `os.wait4`, i.e. the kernel's own accounting for exactly that child. The
images are small generated PNGs and the model is the tiny user CNN of the tests
(`tests/tiny_model.py`, loaded with `--allow-python`), so the fixed cost of the interpreter,
torch and the model is as small as possible and any per-image growth shows. Counts alternate
(200, 2000, 200, 2000, ...) and the median per count is compared.

    python benchmarks/bench_memory.py [--counts 200,2000] [--reps 2] [--size 64x48] [--json FILE]
    python benchmarks/bench_memory.py --config default --counts 64,640 --size 320x240   # the real model

``--config`` names a config for the runs instead of the tiny model (e.g. the built-in
``default``: EfficientNet-Lite0 at 224², where the allocator keeps the memory of freed tensors
for reuse, so growth from fragmentation would show here).

Exits with status 1 if the largest count's median peak exceeds the smallest's by more than
``--limit`` (default 10 %).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from tiny_model import write_tiny_model  # noqa: E402


def make_images(folder: Path, n: int, size: tuple[int, int]) -> None:
    """``n`` noise PNGs of ``size`` (width, height)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"img{i:05d}.png", compress_level=1)


def run_once(folder: Path, config: Path | str, code: Path | None, out: Path, batch: int) -> tuple[float, float, dict]:
    """Explain ``folder`` in a fresh process; return (peak RSS in MiB, seconds, report summary)."""
    cmd = [sys.executable, "-m", "lrpcli", "explain", str(folder), "-c", str(config), "-o", str(out), "-q", "-b", str(batch)]
    if code is not None:
        cmd += ["--allow-python", str(code)]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=folder.parent)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    stderr = proc.stderr.read().decode() if proc.stderr else ""
    if proc.returncode != 0:
        raise SystemExit(f"lrp explain failed ({proc.returncode}):\n{stderr}")
    summary = json.loads((out / "report.json").read_text(encoding="utf-8"))["summary"]
    return usage.ru_maxrss / 1024.0, seconds, summary  # ru_maxrss is in KiB on Linux


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--counts", default="200,2000", help="image counts to compare")
    parser.add_argument("--reps", type=int, default=2, help="runs per count (alternating)")
    parser.add_argument("--size", default="64x48", help="image size WIDTHxHEIGHT")
    parser.add_argument("--crop", type=int, default=32, help="model input size")
    parser.add_argument("--batch", type=int, default=8, help="--batch-size of each run")
    parser.add_argument("--limit", type=float, default=0.10, help="allowed relative growth")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    parser.add_argument("--config", default="tiny", help="'tiny' (the test CNN) or a config for lrp explain")
    args = parser.parse_args()
    counts = [int(c) for c in args.counts.split(",")]
    width, height = (int(v) for v in args.size.lower().split("x"))
    peaks: dict[int, list[float]] = {n: [] for n in counts}
    times: dict[int, list[float]] = {n: [] for n in counts}
    with tempfile.TemporaryDirectory(prefix="lrp-bench-memory-") as tmp:
        base = Path(tmp)
        config: Path | str = args.config
        code: Path | None = None
        if args.config == "tiny":
            config = write_tiny_model(base / "model", size=args.crop)
            code = base / "model" / "model.py"
        for n in counts:
            make_images(base / f"images{n}", n, (width, height))
        for rep in range(args.reps):
            for n in counts:
                out = base / f"out{n}-{rep}"
                peak, seconds, summary = run_once(base / f"images{n}", config, code, out, args.batch)
                assert summary["ok"] == n, summary
                peaks[n].append(peak)
                times[n].append(seconds)
                size_mb = (out / "report.json").stat().st_size / 2**20
                print(
                    f"rep {rep + 1}: {n:>6} images  peak RSS {peak:7.1f} MiB  {seconds:6.1f} s  "
                    f"({n / seconds:5.1f} images/s, report.json {size_mb:.1f} MiB)",
                    flush=True,
                )
    low, high = min(counts), max(counts)
    med = {n: statistics.median(v) for n, v in peaks.items()}
    growth = med[high] / med[low] - 1.0
    ok = growth <= args.limit
    print(
        f"median peak RSS: {low} images {med[low]:.1f} MiB, {high} images {med[high]:.1f} MiB; "
        f"growth {growth * 100:+.1f} % (limit {args.limit * 100:.0f} %): {'PASS' if ok else 'FAIL'}"
    )
    if args.json is not None:
        args.json.write_text(
            json.dumps(
                {"counts": counts, "peak_rss_mib": peaks, "seconds": times, "growth": growth, "pass": ok},
                indent=2,
            )
            + "\n",
            encoding="utf-8",
        )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
