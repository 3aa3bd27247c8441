"""Several maps per image from one forward pass (``Explainer.each``, ``lrp explain --target topK``)
against one call per class, and what keeping the forward pass for K walks costs in memory.

In one process, on the same batch (``--batch`` random normalised 224² images, fixed seed), with
the embedded EfficientNet-Lite0 and the default composite, ``precision="model"`` (no float64
redo, so both variants do exactly the rule work asked for), ``--reps`` alternating repetitions:

* ``K calls``: ``explainer(x, top[:, k])`` for k = 1..K (K forward passes, K reverse walks);
* ``each``: ``explainer.each(x, top_classes(K))`` (one forward pass, K reverse walks);
* ``floor``: one plain forward pass plus one gradient (``torch.autograd``), for scale.

The allocator is tuned as ``lrp`` tunes it (:func:`lrpcli.tune_allocator`); without that, the
walks that must leave the forward pass's tensors intact allocate fresh memory where a single
walk reuses them, and page faults eat the saving. Reported: median seconds of each, the ratios,
and each variant's peak resident memory above the state before it, sampled every millisecond
from ``/proc/self/statm`` in a fresh child process per variant.

    python benchmarks/bench_targets.py [--batch 4] [--k 3] [--reps 5]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

import torch

import lrpcli
from lrpcli import Explainer, top_classes
from lrpcli.models import efficientnet_lite0


def _inputs(batch: int) -> torch.Tensor:
    return torch.randn(batch, 3, 224, 224, generator=torch.Generator().manual_seed(0)).clamp(-2.1, 2.6)


def _calls(explainer: Explainer, x: torch.Tensor, k: int) -> None:
    # each call chooses its class from its own forward pass, as K separate runs would
    for rank in range(k):
        explainer(x, lambda logits, r=rank: logits.topk(r + 1, dim=1).indices[:, r])


def _each(explainer: Explainer, x: torch.Tensor, k: int) -> None:
    explainer.each(x, top_classes(k))


def _floor(model: torch.nn.Module, x: torch.Tensor) -> None:
    leaf = x.clone().requires_grad_(True)
    out = model(leaf)
    torch.autograd.grad(out.gather(1, out.argmax(1, keepdim=True)).sum(), leaf)


def _rss_mib() -> float:
    with open("/proc/self/statm", encoding="ascii") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def _peak(variant: str, batch: int, k: int) -> float:
    """MiB of peak RSS during one run of ``variant`` above the RSS just before it, in a child
    (explainer built and prepared for the batch's shape beforehand)."""
    code = f"""
import sys, threading, time, torch, lrpcli
sys.path.insert(0, {repr(sys.path[0])})
import bench_targets as b
from lrpcli import Explainer
from lrpcli.models import efficientnet_lite0
lrpcli.tune_allocator()
model = efficientnet_lite0().eval(); ex = Explainer(model, precision="model"); x = b._inputs({batch})
ex._batch_layout(x)  # prepared, the layout probe done: only the variant is measured
before = b._rss_mib(); peak = [before]; done = threading.Event()
def sample():
    while not done.is_set():
        peak[0] = max(peak[0], b._rss_mib()); time.sleep(0.001)
t = threading.Thread(target=sample); t.start()
b._{variant}(ex, x, {k})
done.set(); t.join()
print(peak[0] - before)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--k", type=int, default=3)
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()
    lrpcli.tune_allocator()
    model = efficientnet_lite0().eval()
    explainer = Explainer(model, precision="model")
    x = _inputs(args.batch)
    explainer(x)  # prepare, and the batch layout probe for this shape
    times: dict[str, list[float]] = {"K calls": [], "each": [], "floor": []}
    for _ in range(args.reps):
        for name, run in (
            ("K calls", lambda: _calls(explainer, x, args.k)),
            ("each", lambda: _each(explainer, x, args.k)),
            ("floor", lambda: _floor(model, x)),
        ):
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    # the maps agree (the tests check this exactly; here as a sanity check of the timed code)
    many = explainer.each(x, top_classes(args.k))
    single = explainer(x, many[-1].targets)
    agree = float((many[-1].relevance - single.relevance).abs().max() / single.relevance.abs().max())
    med = {name: statistics.median(v) for name, v in times.items()}
    result = {
        "batch": args.batch,
        "k": args.k,
        "reps": args.reps,
        "threads": torch.get_num_threads(),
        "median_s": med,
        "each_over_k_calls": med["each"] / med["K calls"],
        "k_calls_over_floor": med["K calls"] / med["floor"],
        "each_over_floor": med["each"] / med["floor"],
        "peak_rss_mib": {name: _peak(fn, args.batch, args.k) for name, fn in (("K calls", "calls"), ("each", "each"))},
        "max_relative_difference_of_map_k": agree,
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
