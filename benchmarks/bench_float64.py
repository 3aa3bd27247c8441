"""Precision "auto" under α2β1 on EfficientNet-Lite0: the code before and after the float64 fixes, in one process.

``lrp explain --composite epsilon_alpha2_beta1_flat`` was ~40× slower than ``epsilon_plus``:
every image's float32 ledger missed the 1e-5 tolerance, so each was recomputed in float64, and
PyTorch runs a float64 depthwise convolution on the CPU as one small convolution per channel
(18,000 of them per pass over two images here), slow with one thread and far slower with two on a busy machine.
Two changes: αβ computes ``p`` and ``n`` of layers with few inputs per output directly (instead
of ``z − p``, which cancels; :func:`lrpcli.core.rules._few_inputs`), so the float32 ledger closes
and nothing is redone; and float64 depthwise convolutions run as shifted products
(:meth:`lrpcli.core.layers.Affine._shifted`), so the float64 pass of a redo that is still
needed costs about 2–3 float32 passes. "before" runs the old code paths (both switched back by patching those two
functions); "old rule" keeps the old αβ (so every image is redone) with the new kernel.

Same photos (``benchmarks/photos``, the default config's preprocessing) for every variant;
repetitions interleaved after a warm-up; medians and ratios. Every "auto" result is checked to
close within the tolerance, and the relevance of each variant is compared with the float64
answer.

    python benchmarks/bench_float64.py [--images 2] [--reps 5] [--threads N]
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time
from pathlib import Path
from typing import Iterator

import torch

ROOT = Path(__file__).resolve().parents[1]


@contextlib.contextmanager
def old_code(rule: bool, kernel: bool) -> Iterator[None]:
    """Switch back to the αβ shortcut ``n = z − p`` everywhere (``rule``) and to PyTorch's float64
    depthwise convolution (``kernel``), as before the change."""
    from lrpcli.core import layers, rules

    saved = rules._few_inputs, layers.Affine._shifted
    if rule:
        rules._few_inputs = lambda layer: False  # type: ignore[assignment]
    if kernel:
        layers.Affine._shifted = lambda self, t, w: False  # type: ignore[assignment,method-assign]
    try:
        yield
    finally:
        rules._few_inputs, layers.Affine._shifted = saved  # type: ignore[method-assign]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: PyTorch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from lrpcli.config import load_config
    from lrpcli.core.engine import Explainer
    from lrpcli.io.decode import load_image
    from lrpcli.io.preprocess import preprocess
    from lrpcli.models.sources import load_model
    from lrpcli.run.allocator import tune_allocator

    print(f"allocator: {tune_allocator()}; threads: {torch.get_num_threads()}")
    cfg = load_config(None)
    model = load_model(cfg.model).module.eval()
    paths = sorted(p for p in (ROOT / "benchmarks" / "photos").iterdir() if p.suffix in (".png", ".jpg"))
    paths = paths[: args.images]
    x = torch.stack([preprocess(load_image(p).image, cfg.preprocess)[0] for p in paths])
    print(f"{len(paths)} photos: {', '.join(p.name for p in paths)}; input {tuple(x.shape)}")

    ab = "epsilon_alpha2_beta1_flat"
    # name: (composite, precision, old rule, old kernel)
    variants = {
        "before: αβ auto": (ab, "auto", True, True),
        "before: αβ model": (ab, "model", True, True),
        "after: αβ auto": (ab, "auto", False, False),
        "after: αβ model": (ab, "model", False, False),
        "after: epsilon_plus auto": ("epsilon_plus", "auto", False, False),
        "old rule, new kernel: αβ auto": (ab, "auto", True, False),
        "after: αβ float64": (ab, "float64", False, False),
    }
    options = cfg.composite_options()
    explainers = {}
    for name, (comp, precision, rule, kernel) in variants.items():
        with old_code(rule, kernel):
            explainers[name] = Explainer(model, comp, precision=precision, **options)

    def call(name: str) -> tuple[float, object]:
        _, _, rule, kernel = variants[name]
        with old_code(rule, kernel):
            start = time.perf_counter()
            out = explainers[name](x)
            return time.perf_counter() - start, out

    results = {}
    for name in variants:  # warm-up (builds the float64 copies of the model, caches derived weights)
        results[name] = call(name)[1]
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(args.reps):
        for name in variants:
            seconds, results[name] = call(name)
            times[name].append(seconds)

    exact = results["after: αβ float64"].relevance  # type: ignore[attr-defined]
    scale = exact.flatten(1).abs().amax(1)
    med = {name: statistics.median(t) for name, t in times.items()}
    print(f"\n{'variant':44s} {'median s':>9s}  redone in float64         max rel. closure  max|ΔR|/max|R64|")
    for name in variants:
        e = results[name]
        err = float(e.ledger.relative_error().max())  # type: ignore[attr-defined]
        if variants[name][1] != "model":
            assert err <= 1e-5, f"{name}: ledger closes only to {err:.1e}"
        redone = sum(r is not None for r in e.redone)  # type: ignore[attr-defined]
        how = f"{redone} of {len(e.redone)} images"  # type: ignore[attr-defined]
        dev = "n/a (other rules)"
        if variants[name][0] == ab:
            dev = f"{float(((e.relevance - exact).flatten(1).abs().amax(1) / scale).max()):.1e}"  # type: ignore[attr-defined]
        print(f"{name:44s} {med[name]:9.2f}  {how:25s} {err:16.1e}  {dev}")
    ratios = [
        ("before: αβ auto", "after: αβ auto"),
        ("before: αβ auto", "before: αβ model"),
        ("before: αβ auto", "after: epsilon_plus auto"),
        ("after: αβ auto", "after: αβ model"),
        ("after: αβ auto", "after: epsilon_plus auto"),
        ("old rule, new kernel: αβ auto", "after: αβ model"),
    ]
    print()
    for a, b in ratios:
        print(f"{a} ÷ {b}: {med[a] / med[b]:.2f}")


if __name__ == "__main__":
    main()
