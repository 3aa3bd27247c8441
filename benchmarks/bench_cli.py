"""End-to-end throughput of `lrp explain` against the engine alone, on the same images.

Engine-only: the images are decoded and preprocessed beforehand, then only the explanation
runs (batches of ``--batch``, after one warm-up batch), in this process. End-to-end:
`lrp explain FOLDER` in a subprocess (decode, resize, explain, render, write PNGs and the
report). The fixed cost of a run (interpreter start, model load, the first batch's warm-up,
writing the report) is removed by also timing a run over the first batch only (B images):
throughput = (N − B) / (t_N − t_B), the steady state, as on the engine side. Also shown: the
run's own loop rate from its report (N / ``summary.elapsed_s``, first batch included). Runs
alternate (engine, CLI B, CLI N, engine, ...). Both sides use the allocator setting of the
``lrp`` command (:func:`lrpcli.run.allocator.tune_allocator`).

``--in-process`` instead runs the command's loop (:class:`lrpcli.run.pipeline.Pipeline` with the
report writer, on the explainer of the engine side) in this process, interleaved with the
engine alone: no process start or model load to subtract, so less noise, but no first-batch
warm-up either.

``--view full|crop`` draws the pictures on the whole photo (the default) or on the model's
input only; ``--view both`` (with ``--in-process``) times the loop with each, interleaved, to
show what the full view costs.

    python benchmarks/bench_cli.py [--images 64] [--batch 8] [--workers 2] [--reps 3] [--threads N] [--in-process] [--view full|crop|both]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


def make_images(folder: Path, n: int) -> list[Path]:
    """``n`` JPEG photos of 300–640 px made from crops of the sample images."""
    sources = sorted(p for p in (ROOT / "sample_images").iterdir() if p.suffix in (".png", ".jpg"))
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        img = Image.open(sources[i % len(sources)]).convert("RGB")
        w, h = img.size
        k = 0.6 + 0.4 * ((i * 7) % 10) / 10
        box = (int((1 - k) * w * ((i % 3) / 2)), int((1 - k) * h * ((i % 2))), 0, 0)
        box = (box[0], box[1], box[0] + int(k * w), box[1] + int(k * h))
        path = folder / f"img_{i:03d}.jpg"
        img.crop(box).save(path, quality=92)
        out.append(path)
    return out


class Engine:
    """The default config's model and composite, and the images decoded beforehand."""

    def __init__(self, paths: list[Path], batch: int) -> None:
        import lrpcli
        from lrpcli.config import load_config
        from lrpcli.io.decode import load_image
        from lrpcli.io.preprocess import preprocess
        from lrpcli.models.sources import load_model

        self.cfg = load_config(None)
        self.loaded = load_model(self.cfg.model)
        self.explainer = lrpcli.Explainer(
            self.loaded.module, self.cfg.rules, ignore_bias=self.cfg.ignore_bias, **self.cfg.composite_options()
        )
        tensors = [preprocess(load_image(p).image, self.cfg.preprocess)[0] for p in paths]
        self.batches = [torch.stack(tensors[i : i + batch]) for i in range(0, len(tensors), batch)]
        self.explainer(self.batches[0])  # warm-up

    def explain_all(self) -> float:
        """Seconds to explain every batch (the engine alone)."""
        t = time.perf_counter()
        for b in self.batches:
            self.explainer(b)
        return time.perf_counter() - t

    def pipeline(self, folder: Path, out: Path, batch: int, workers: int, view: str | None = None) -> float:
        """Seconds of `lrp explain`'s loop in this process: decode, explain, render, write, report."""
        from dataclasses import replace

        from lrpcli.io.inputs import discover
        from lrpcli.run.outputs import REPORT_NAME, plan_outputs
        from lrpcli.run.pipeline import Pipeline, RunSettings
        from lrpcli.run.report import ReportWriter

        inputs = discover([str(folder)])
        plans = plan_outputs(inputs, out, overwrite=True)
        settings = RunSettings(
            preprocess=self.cfg.preprocess, render=replace(self.cfg.render, view=view or self.cfg.render.view),
            batch_size=batch, workers=workers,
            ledger_steps=self.cfg.report.ledger_steps,
        )  # fmt: skip
        pipeline = Pipeline(self.explainer, self.loaded.categories, settings, out_dir=out)
        out.mkdir(parents=True, exist_ok=True)
        t = time.perf_counter()
        with ReportWriter(out / REPORT_NAME, {}, inputs=len(inputs), tolerance=self.cfg.report.tolerance) as writer:
            pipeline.run(inputs, plans, writer.add)
            writer.write(elapsed_s=time.perf_counter() - t)
        return time.perf_counter() - t


def cli_run(folder: Path, out: Path, batch: int, workers: int, threads: int | None, view: str | None = None) -> tuple[float, float]:
    """Wall seconds of one `lrp explain` subprocess, and the loop's seconds from its report."""
    cmd = [sys.executable, "-m", "lrpcli", "explain", str(folder), "--out", str(out), "--quiet", "--overwrite",
           "--batch-size", str(batch), "--workers", str(workers)]  # fmt: skip
    if view is not None:
        cmd += ["--view", view]
    env = dict(os.environ)
    if threads is not None:
        env["OMP_NUM_THREADS"] = str(threads)  # torch's intra-op threads in the child
    t = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, env=env)
    wall = time.perf_counter() - t
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    return wall, float(report["summary"]["elapsed_s"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=64)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None,
                    help="torch intra-op threads for both sides (default: torch's, one per core)")
    ap.add_argument("--in-process", action="store_true",
                    help="run the command's loop in this process instead of `lrp explain` subprocesses")
    ap.add_argument("--view", choices=("full", "crop", "both"), default=None,
                    help="the pictures' view (default: the config's); both: each, interleaved (--in-process)")
    args = ap.parse_args()
    if args.view == "both" and not args.in_process:
        ap.error("--view both needs --in-process")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    from lrpcli.run.allocator import tune_allocator

    allocator = tune_allocator()  # what `lrp` does at start, so the engine-only side is comparable
    tmp = Path(tempfile.mkdtemp(prefix="lrp-bench-"))
    try:
        n, b = args.images, min(args.batch, args.images - 1)
        paths = make_images(tmp / "many", n)
        engine = Engine(paths, args.batch)
        header = (f"images: {n}, batch {args.batch}, workers {args.workers}, torch threads {torch.get_num_threads()}, "
                  f"allocator {allocator}, reps {args.reps}")  # fmt: skip
        if args.in_process:
            views = ["full", "crop"] if args.view == "both" else [args.view]
            eng: list[float] = []
            loops: dict[str | None, list[float]] = {v: [] for v in views}
            for _ in range(args.reps):
                eng.append(engine.explain_all())
                for v in views:
                    loops[v].append(engine.pipeline(tmp / "many", tmp / "out", args.batch, args.workers, v))
            e_rate = n / statistics.median(eng)
            print(header + ", in process")
            print(f"engine only : {e_rate:.2f} images/s  (runs " + ", ".join(f"{x:.2f}" for x in eng) + " s)")
            for v, loop in loops.items():
                l_rate = n / statistics.median(loop)
                name = f"lrp loop ({v or engine.cfg.render.view} view)"
                print(f"{name}: {l_rate:.2f} images/s  (runs " + ", ".join(f"{x:.2f}" for x in loop) + " s)")
                paired = statistics.median(e / x for e, x in zip(eng, loop))
                print(f"  end-to-end ÷ engine-only: {l_rate / e_rate:.2f} (ratio of medians), {paired:.2f} (median of "
                      "the repetitions' own ratios)")  # fmt: skip
            if len(views) == 2:
                paired = statistics.median(c / f for f, c in zip(loops["full"], loops["crop"]))
                print(f"full view ÷ crop view, loop rate: {paired:.2f} (median of the repetitions' own ratios)")
            return
        first = tmp / "first"
        first.mkdir()
        for path in paths[:b]:
            shutil.copy(path, first / path.name)
        eng, full, short, loop = [], [], [], []
        for _ in range(args.reps):
            eng.append(engine.explain_all())
            short.append(cli_run(first, tmp / "out_b", args.batch, args.workers, args.threads, args.view)[0])
            wall, elapsed = cli_run(tmp / "many", tmp / "out", args.batch, args.workers, args.threads, args.view)
            full.append(wall)
            loop.append(elapsed)
        e_rate = n / statistics.median(eng)
        c_rate = (n - b) / (statistics.median(full) - statistics.median(short))
        l_rate = n / statistics.median(loop)
        print(header)
        print(f"engine only : {e_rate:.2f} images/s  (median {statistics.median(eng):.2f} s; runs "
              + ", ".join(f"{x:.2f}" for x in eng) + ")")
        print(f"lrp explain : {c_rate:.2f} images/s  (median {statistics.median(full):.2f} s for {n}, "
              f"{statistics.median(short):.2f} s for the first {b})")  # fmt: skip
        print(f"lrp loop    : {l_rate:.2f} images/s  (report summary.elapsed_s, median {statistics.median(loop):.2f} s, "
              "first batch included)")  # fmt: skip
        paired = statistics.median(e * (n - b) / (n * (f - sh)) for e, f, sh in zip(eng, full, short))
        print(f"end-to-end ÷ engine-only: {c_rate / e_rate:.2f} (steady state; median of the repetitions' own ratios "
              f"{paired:.2f}), {l_rate / e_rate:.2f} (loop incl. warm-up)")  # fmt: skip
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
