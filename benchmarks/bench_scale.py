"""The local backend against the Ray backend on the same images, and what the journal costs.

In one process, on the same ``--images`` photos (made as ``bench_cli.py`` makes them) with the
built-in config (EfficientNet-Lite0), batch ``--batch``, ``--workers`` threads, on the CPU:

* ``local``: :class:`lrpcli.run.pipeline.Pipeline` with the report writer and the journal, as
  ``lrp explain`` runs it; ``local, no journal``: the same without the journal;
* ``ray``: :class:`lrpcli.run.ray_backend.RayRunner` on a local Ray instance of ``--ray-cpus``
  CPUs (started once, before the timed runs), with the report writer and the journal, as
  ``lrp explain --backend ray`` runs it. Each run starts its actor pools (one explaining actor
  that builds the model, one decoding and one writing actor): that start is part of a run.

Runs alternate (local, local without journal, ray) ``--reps`` times. Reported per variant: the
median wall time of a run, images/s over the whole run, and the steady rate, (N − B) / (t_last −
t_first) from the first image's entry to the last (the start of a run left out); then the ratios,
and the time spent appending to the journal per image (measured around each append).

    python benchmarks/bench_scale.py [--images 64] [--batch 8] [--workers 2] [--reps 2] [--ray-cpus 2]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_cli import make_images  # noqa: E402

from lrpcli.cli.explain_options import ExplainOptions  # noqa: E402
from lrpcli.cli.explain_scale import PipelineFactory, explainers  # noqa: E402
from lrpcli.cli.loading import load_cli_config, load_cli_model  # noqa: E402
from lrpcli.cli.options import DeviceChoice  # noqa: E402
from lrpcli.io.inputs import discover  # noqa: E402
from lrpcli.run.allocator import tune_allocator  # noqa: E402
from lrpcli.run.entries import ImageEntry  # noqa: E402
from lrpcli.run.journal import Journal  # noqa: E402
from lrpcli.run.outputs import REPORT_NAME, plan_outputs  # noqa: E402
from lrpcli.run.pipeline import Pipeline, RunSettings  # noqa: E402
from lrpcli.run.ray_backend import RayRunner  # noqa: E402
from lrpcli.run.report import ReportWriter  # noqa: E402


def timed_run(runner: Any, folder: Path, out: Path, *, journal: bool, batch: int) -> dict[str, float]:
    """One run of ``runner`` over ``folder`` into a fresh ``out``: wall time, first/last entry."""
    shutil.rmtree(out, ignore_errors=True)
    inputs = discover([str(folder)])
    plans = plan_outputs(inputs, out)
    out.mkdir(parents=True)
    run = {"bench": True}
    stamps: list[float] = []
    appending = [0.0]  # seconds spent appending to the journal
    with ReportWriter(out / REPORT_NAME, run, inputs=len(inputs), tolerance=1e-5) as writer:
        log = Journal.open(out, run, len(inputs)) if journal else None

        def emit(entry: ImageEntry) -> None:
            assert entry.ok, entry.error
            writer.add(entry)
            if log is not None:
                before = time.perf_counter()
                log.append(entry.to_dict())
                appending[0] += time.perf_counter() - before
            stamps.append(time.perf_counter())

        start = time.perf_counter()
        outcome = runner.run(inputs, plans, emit)
        writer.write(elapsed_s=time.perf_counter() - start)
        if log is not None:
            log.remove()
        wall = time.perf_counter() - start
    assert outcome.processed == len(inputs) == len(stamps)
    steady = (len(stamps) - batch) / (stamps[-1] - stamps[batch - 1])
    return {"wall": wall, "rate": len(inputs) / wall, "steady": steady, "journal_ms": 1e3 * appending[0] / len(inputs)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--reps", type=int, default=2)
    parser.add_argument("--ray-cpus", type=int, default=2)
    args = parser.parse_args()
    tune_allocator()
    work = Path(tempfile.mkdtemp(prefix="bench_scale_"))
    folder = work / "photos"
    make_images(folder, args.images)
    out = work / "out"
    options = ExplainOptions(device=DeviceChoice.cpu, batch_size=args.batch, workers=args.workers)
    cfg = load_cli_config(None, {})
    loaded = load_cli_model(cfg, torch.device("cpu"))
    explainer, _ = explainers(options, cfg, loaded, {}, [])
    settings = RunSettings(
        preprocess=cfg.preprocess,
        render=cfg.render,
        batch_size=args.batch,
        workers=args.workers,
        max_pixels=cfg.max_pixels,
        ledger_steps=cfg.report.ledger_steps,
    )
    local = Pipeline(explainer, loaded.categories, settings, out_dir=out)
    factory = PipelineFactory(options, {}, [], settings, out)
    results: dict[str, list[dict[str, float]]] = {"local": [], "local, no journal": [], "ray": []}
    print(f"{args.images} images, batch {args.batch}, {args.workers} workers, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; Ray: a local instance of {args.ray_cpus} CPUs", file=sys.stderr)
    with RayRunner(factory, settings, out, device="cpu", num_cpus=args.ray_cpus) as ray_runner:
        for rep in range(args.reps):
            for name, runner, journal in (
                ("local", local, True),
                ("local, no journal", local, False),
                ("ray", ray_runner, True),
            ):
                result = timed_run(runner, folder, out, journal=journal, batch=args.batch)
                results[name].append(result)
                print(f"rep {rep + 1} {name}: {result['wall']:.1f} s, {result['rate']:.2f} images/s, "
                      f"steady {result['steady']:.2f} images/s", file=sys.stderr)
    shutil.rmtree(work, ignore_errors=True)

    def median(name: str, key: str) -> float:
        return statistics.median(r[key] for r in results[name])

    print("| variant | run (s) | images/s (whole run) | images/s (steady) |")
    print("|---|---|---|---|")
    for name in results:
        print(f"| {name} | {median(name, 'wall'):.1f} | {median(name, 'rate'):.2f} | {median(name, 'steady'):.2f} |")
    print()
    print(f"journal cost: local with / without journal, run time ratio {median('local', 'wall') / median('local, no journal', 'wall'):.3f}; "
          f"appending: {median('local', 'journal_ms'):.3f} ms per image ({median('local', 'journal_ms') * median('local', 'rate') / 10:.3f} % of the run)")
    print(f"ray / local, whole run: images/s ratio {median('ray', 'rate') / median('local', 'rate'):.3f}")
    print(f"ray / local, steady: images/s ratio {median('ray', 'steady') / median('local', 'steady'):.3f}")


if __name__ == "__main__":
    main()
