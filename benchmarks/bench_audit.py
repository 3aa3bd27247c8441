"""`lrp audit` over many saved relevance maps: time, and peak memory against a run a tenth the size.

A run folder is generated (`tests/audit_runs.py`: a report written by lrpcli's own ReportWriter
and one `NAME.relevance.npy` per image, float32 3 x 224 x 224 like EfficientNet-Lite0's, 600 KB
each; in the first class a share of the maps carries a planted corner shortcut). Each audit is a
fresh `python -m lrpcli audit RUN -q` subprocess; its wall time and its peak resident set size
(max RSS, from `os.wait4`) are measured. Memory must not grow with the maps' full size: only the
downsized maps (32 x 32 float32, 4 KB each) and the report's text are held, so the growth from the
small run to the large one is compared with what those need.

    python benchmarks/bench_audit.py [--count 10000] [--classes 10] [--size 224] [--reps 1] [--json FILE]

The maps are read right after they were written, so they come from the page cache when the
machine's memory holds them (6 GB for 10,000 maps at 224 x 224). Exits with status 1 if the large
audit takes longer than `--limit` seconds (default 60) or its peak exceeds the small one's by
more than the downsized maps and the report's text need plus 100 MB.
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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from audit_runs import synthetic_run


def audit_once(run: Path, out: Path) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB) of one `lrp audit` subprocess."""
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "lrpcli", "audit", str(run), "-o", str(out), "-q", "--overwrite"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    stderr = proc.stderr.read().decode() if proc.stderr else ""
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"lrp audit failed:\n{stderr}")
    return wall, usage.ru_maxrss / 1024.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--reps", type=int, default=1)
    parser.add_argument("--limit", type=float, default=60.0)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    results: dict[str, object] = {"count": args.count, "classes": args.classes, "size": args.size}
    with tempfile.TemporaryDirectory(prefix="bench_audit_") as tmp:
        runs = {}
        for count in (args.count // 10, args.count):
            per_class = count // args.classes
            classes = {f"class{c:02d}": per_class for c in range(args.classes)}
            folder = Path(tmp) / f"run{count}"
            started = time.perf_counter()
            synthetic_run(folder, classes, marked={"class00": 0.3}, size=args.size, seed=1)
            print(f"generated {count} maps of 3x{args.size}x{args.size} in {time.perf_counter() - started:.0f} s", file=sys.stderr)
            runs[count] = folder
        measured: dict[int, list[tuple[float, float]]] = {c: [] for c in runs}
        for _ in range(args.reps):
            for count, folder in runs.items():
                measured[count].append(audit_once(folder, Path(tmp) / f"audit{count}"))
        report_mib = {c: (runs[c] / "report.json").stat().st_size / 2**20 for c in runs}
        doc = json.loads((Path(tmp) / f"audit{args.count}" / "audit.json").read_text(encoding="utf-8"))
        first = doc["classes"][0] if doc["classes"] else {}
        results["clusters_of_class00"] = [k["size"] for k in first.get("clusters", [])]
    small, large = args.count // 10, args.count
    for count in (small, large):
        walls = [w for w, _ in measured[count]]
        peaks = [p for _, p in measured[count]]
        results[str(count)] = {
            "wall_s": statistics.median(walls),
            "peak_rss_mib": statistics.median(peaks),
            "maps_per_s": count / statistics.median(walls),
            "report_mib": report_mib[count],
        }
        print(
            f"{count:>6} maps: {statistics.median(walls):6.1f} s ({count / statistics.median(walls):.0f} maps/s), "
            f"peak RSS {statistics.median(peaks):.0f} MiB, report.json {report_mib[count]:.1f} MiB",
        )
    growth = results[str(large)]["peak_rss_mib"] - results[str(small)]["peak_rss_mib"]  # type: ignore[index]
    needed = (large - small) * 32 * 32 * 4 / 2**20 + report_mib[large] - report_mib[small]
    full = (large - small) * 3 * args.size * args.size * 4 / 2**20
    results["growth_mib"] = growth
    results["downsized_and_report_mib"] = needed
    results["full_size_maps_mib"] = full
    print(
        f"peak grows by {growth:.0f} MiB from {small} to {large} maps; the downsized maps and the report's text "
        f"need {needed:.0f} MiB; the full-size maps would be {full:.0f} MiB"
    )
    print(f"class00 clusters (30 % planted): {results['clusters_of_class00']}")
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    wall = results[str(large)]["wall_s"]  # type: ignore[index]
    return 1 if wall > args.limit or growth > needed + 100 else 0


if __name__ == "__main__":
    raise SystemExit(main())
