"""Engine speed and memory: lrpcli vs the gradient floor, Zennit and Captum, in one process.

Every method runs on the same inputs; repetitions are interleaved (A B C A B C ...) after a
warm-up, and the table reports medians and ratios, since absolute seconds on a shared machine
mean little. Our relevance is checked against Zennit's on the timed inputs, so a fast wrong
answer cannot pass. Peak memory is measured per method in a fresh subprocess (max RSS, or
``torch.cuda.max_memory_allocated`` on a GPU), the baseline being the same process after
loading the model and inputs. Every method is timed with the allocator setting the ``lrp`` command
uses (:func:`lrpcli.run.allocator.tune_allocator`); ``--malloc default`` leaves glibc's defaults
for all of them. The memory probes use glibc's defaults unless ``--probe-malloc tuned``: then
freed blocks stay mapped, so the peak RSS also counts heap fragmentation and varies from run
to run.

    python benchmarks/bench_engine.py [--models vgg16,resnet50,efficientnet_lite0] [--batch 8]
                                      [--size 224] [--reps 3] [--device cpu|cuda] [--no-memory]
                                      [--malloc tuned|default] [--probe-malloc default|tuned]
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any, Callable

import torch
import torchvision

import lrpcli
from lrpcli.run.allocator import ENV_VAR, tune_allocator

COMPOSITES = ["epsilon", "epsilon_plus_flat", "epsilon_gamma_box", "epsilon_alpha2_beta1"]
LOW = torch.tensor([-2.1179, -2.0357, -1.8044]).view(1, 3, 1, 1)
HIGH = torch.tensor([2.2489, 2.4286, 2.6400]).view(1, 3, 1, 1)


def build_model(name: str, device: str) -> torch.nn.Module:
    torch.manual_seed(0)
    if name == "efficientnet_lite0":
        from lrpcli.models import efficientnet_lite0

        model = efficientnet_lite0()
    else:
        model = getattr(torchvision.models, name)(weights=None)
        bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
        if bns:  # realistic BatchNorm statistics (as in the tests), so numbers are not degenerate
            for bn in bns:
                bn.reset_running_stats()
                bn.momentum = None
            model.train()
            with torch.no_grad():
                model(torch.randn(8, 3, 224, 224, generator=torch.Generator().manual_seed(1)))
    model.eval().to(device)
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def inputs(batch: int, size: int, device: str) -> torch.Tensor:
    x = torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(3))
    return x.clamp(-2.0, 2.2).to(device)


def zennit_composite(name: str, canonizers: list) -> Any:
    from zennit.composites import EpsilonAlpha2Beta1, EpsilonGammaBox, EpsilonPlusFlat, LayerMapComposite
    from zennit.composites import layer_map_base
    from zennit.rules import Epsilon
    from zennit.types import Convolution

    if name == "epsilon":
        return LayerMapComposite(
            layer_map=layer_map_base() + [(Convolution, Epsilon()), (torch.nn.Linear, Epsilon())],
            canonizers=canonizers,
        )
    if name == "epsilon_plus_flat":
        return EpsilonPlusFlat(canonizers=canonizers)
    if name == "epsilon_gamma_box":
        return EpsilonGammaBox(low=LOW.double(), high=HIGH.double(), canonizers=canonizers)
    return EpsilonAlpha2Beta1(canonizers=canonizers)


def zennit_canonizers(model_name: str) -> list:
    from zennit.canonizers import SequentialMergeBatchNorm
    from zennit.torchvision import ResNetCanonizer, VGGCanonizer

    base = {"vgg16": VGGCanonizer, "resnet50": ResNetCanonizer}.get(model_name, SequentialMergeBatchNorm)

    class ExactMerge(base):  # type: ignore[valid-type,misc]
        """Zennit's merge leaves eps in the identity BatchNorm; make it exact (see tests/test_engine.py)."""

        def apply(self, root):  # type: ignore[no-untyped-def]
            instances = super().apply(root)
            for m in root.modules():
                if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                    m.eps = 0.0
            return instances

    return [ExactMerge()]


class Methods:
    """Callables for every method on one model; each returns the relevance (or gradient)."""

    def __init__(
        self,
        model_name: str,
        model: torch.nn.Module,
        x: torch.Tensor,
        targets: torch.Tensor,
        composites: list[str] | None = None,
    ) -> None:
        self.model_name, self.model, self.x, self.targets = model_name, model, x, targets
        self.composites = composites or COMPOSITES
        self.onehot = torch.nn.functional.one_hot(targets, 1000).to(x.dtype)
        self._zennit: dict[str, Any] = {}
        self._ours: dict[str, lrpcli.Explainer] = {}

    def forward(self) -> torch.Tensor:
        with torch.no_grad():
            return self.model(self.x)

    def floor(self) -> torch.Tensor:
        x = self.x.detach().requires_grad_(True)
        out = self.model(x)
        (grad,) = torch.autograd.grad((out * self.onehot).sum(), x)
        return grad * x.detach()

    def ours(self, composite: str) -> torch.Tensor:
        ex = self._ours.get(composite)
        if ex is None:
            ex = self._ours[composite] = lrpcli.Explainer(  # coverage=False: Zennit's first-layer rules
                self.model, composite, precision="model", low=LOW.to(self.x), high=HIGH.to(self.x), coverage=False
            )
        return ex(self.x, self.targets).relevance

    def zennit(self, composite: str) -> torch.Tensor:
        from zennit.attribution import Gradient

        att = self._zennit.get(composite)
        if att is None:
            zmodel = copy.deepcopy(self.model)
            att = Gradient(model=zmodel, composite=zennit_composite(composite, zennit_canonizers(self.model_name)))
            att.__enter__()
            self._zennit[composite] = att
        _, rel = att(self.x.clone(), lambda out: out * self.onehot)
        return rel

    def captum(self) -> torch.Tensor:
        from captum.attr import LRP

        if "captum" not in self._zennit:
            self._zennit["captum"] = LRP(copy.deepcopy(self.model))
        return self._zennit["captum"].attribute(self.x.clone(), target=self.targets)

    def table(self) -> dict[str, Callable[[], torch.Tensor]]:
        out: dict[str, Callable[[], torch.Tensor]] = {"forward": self.forward, "floor": self.floor}
        for c in self.composites:
            out[f"ours:{c}"] = lambda c=c: self.ours(c)
            out[f"zennit:{c}"] = lambda c=c: self.zennit(c)
        if self.model_name == "vgg16" and "epsilon" in self.composites:  # Captum's LRP ignores skip connections (ResNet) and lacks ReLU6 handling
            out["captum:epsilon"] = self.captum
        return out


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def time_all(methods: dict[str, Callable[[], torch.Tensor]], reps: int, device: str) -> dict[str, float]:
    for fn in methods.values():  # warm-up (also prepares programs and attaches hooks)
        fn()
    times: dict[str, list[float]] = {k: [] for k in methods}
    for _ in range(reps):
        for name, fn in methods.items():
            sync(device)
            t = time.perf_counter()
            fn()
            sync(device)
            times[name].append(time.perf_counter() - t)
    return {k: statistics.median(v) for k, v in times.items()}


def check_agreement(m: Methods) -> dict[str, str]:
    """max|ours − Zennit| / max|Zennit| per composite (worst image), as printed.

    Where float32 results differ by more than 1e-4 of max|R| (αβ and ε amplify rounding on some
    inputs), both engines are re-run in float64 on those images: they must then agree to 1e-8,
    which shows the float32 gap is rounding, not a different rule. Anything else fails.
    """
    out = {}
    if m.model_name not in ("vgg16", "resnet50"):
        # Zennit ships canonizers for VGG and ResNet only; elsewhere its functional additions get
        # no sum rule, so it computes a different (not conservative) explanation
        return {c: "n/a (no Zennit canonizer)" for c in m.composites}
    for c in m.composites:
        ours, theirs = m.ours(c), m.zennit(c)
        diff = (ours - theirs).abs().flatten(1).max(1).values / theirs.abs().flatten(1).max(1).values
        worst = float(diff.max())
        if worst <= 1e-4:
            out[c] = f"{worst:.1e}"
            continue
        rows = (diff > 1e-4).nonzero().flatten()
        twin = Methods(m.model_name, copy.deepcopy(m.model).double(), m.x[rows].double(), m.targets[rows], [c])
        o64, z64 = twin.ours(c), twin.zennit(c)
        d64 = float(((o64 - z64).abs().flatten(1).max(1).values / z64.abs().flatten(1).max(1).values).max())
        assert d64 <= 1e-8, f"{m.model_name} {c}: ours differs from Zennit by {worst:.3g} (float32), {d64:.3g} (float64)"
        out[c] = f"{worst:.1e} (f64 {d64:.0e})"
    return out


def peak_memory(model_name: str, method: str, targets: list[int], args: argparse.Namespace) -> float:
    """Peak memory (MiB) of a fresh process running ``method`` once, above its set-up baseline."""
    cmd = [sys.executable, __file__, "--probe", method, "--models", model_name, "--batch", str(args.batch),
           "--composites", args.composites,
           "--size", str(args.size), "--device", args.device, "--targets", ",".join(map(str, targets))]  # fmt: skip
    env = dict(os.environ)
    if args.probe_malloc == "default":
        env[ENV_VAR] = "default"
    else:
        env.pop(ENV_VAR, None)
    res = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env)
    return float(json.loads(res.stdout.strip().splitlines()[-1])["peak_mib"])


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def rss_peak_during(fn: Callable[[], Any]) -> tuple[int, int]:
    """(RSS before, highest RSS seen while ``fn`` runs), sampling every millisecond in a thread."""
    import threading

    base = _rss()
    peak = [base]
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], _rss())
            time.sleep(0.001)

    t = threading.Thread(target=watch, daemon=True)
    t.start()
    try:
        fn()
    finally:
        done.set()
        t.join()
    return base, max(peak[0], _rss())


def probe(args: argparse.Namespace) -> None:
    """Run one method once and print its peak memory above the baseline (model + inputs loaded)."""
    model = build_model(args.models, args.device)
    x = inputs(args.batch, args.size, args.device)
    targets = torch.tensor([int(t) for t in args.targets.split(",")], device=args.device)
    fn = Methods(args.models, model, x, targets, args.composites.split(",")).table()[args.probe]
    if args.device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        fn()
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated()
    else:
        base, peak = rss_peak_during(fn)
    print(json.dumps({"peak_mib": (peak - base) / 2**20}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="vgg16,resnet50,efficientnet_lite0")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--composites", default=",".join(COMPOSITES), help="comma-separated subset to run")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--no-memory", action="store_true", help="skip the per-method memory subprocesses")
    ap.add_argument("--json", help="also write the results to this JSON file")
    ap.add_argument("--malloc", default="tuned", choices=["tuned", "default"],
                    help="glibc allocator setting for every method (what `lrp` does, or glibc's defaults)")
    ap.add_argument("--probe-malloc", default="default", choices=["default", "tuned"],
                    help="allocator of the memory probes: glibc's default (peak RSS follows the memory "
                         "in use) or tuned (freed blocks stay mapped: adds fragmentation)")
    ap.add_argument("--probe", help=argparse.SUPPRESS)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--targets", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.malloc == "default":
        os.environ[ENV_VAR] = "default"  # inherited by the memory probes
    allocator = tune_allocator()
    if args.probe:
        probe(args)
        return
    results: dict[str, Any] = {"batch": args.batch, "size": args.size, "device": args.device,
                               "torch": torch.__version__, "threads": torch.get_num_threads(), "allocator": allocator,
                               "memory_probe_allocator": args.probe_malloc, "models": {}}  # fmt: skip
    names = args.models.split(",")
    if len(names) > 1:
        # one child process per model: with the tuned allocator freed memory stays in the process,
        # and three models' worth of Zennit, Captum and float64 checks would not fit in 24 GiB
        print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, allocator: {allocator}, "
              f"memory probes: {args.probe_malloc} allocator", flush=True)
        for name in names:
            with tempfile.NamedTemporaryFile(suffix=".json") as tmp:
                cmd = [sys.executable, __file__, *_without_models(sys.argv[1:]), "--models", name, "--json", tmp.name, "--child"]
                subprocess.run(cmd, check=True)
                results["models"].update(json.load(open(tmp.name))["models"])
    else:
        if not args.child:
            print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, allocator: {allocator}, "
              f"memory probes: {args.probe_malloc} allocator", flush=True)
        results["models"][names[0]] = run_model(names[0], args)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


def _without_models(argv: list[str]) -> list[str]:
    """The command line minus ``--models``/``--json`` (each child gets its own)."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a in ("--models", "--json"):
            skip = True
        elif not a.startswith(("--models=", "--json=")):
            out.append(a)
    return out


def run_model(name: str, args: argparse.Namespace) -> dict[str, Any]:
    """Time, check and (unless ``--no-memory``) measure every method on one model; print its table."""
    model = build_model(name, args.device)
    x = inputs(args.batch, args.size, args.device)
    with torch.no_grad():
        targets = model(x).argmax(1)
    composites = args.composites.split(",")
    m = Methods(name, model, x, targets, composites)
    agreement = check_agreement(m)
    table = m.table()
    med = time_all(table, args.reps, args.device)
    mem = {}
    if not args.no_memory:
        for k in ["floor"] + [f"ours:{c}" for c in composites] + [f"zennit:{c}" for c in composites] + (
            ["captum:epsilon"] if "captum:epsilon" in table else []
        ):
            mem[k] = peak_memory(name, k, targets.tolist(), args)
    print_model(name, med, agreement, mem, composites)
    return {"median_s": med, "agreement": agreement, "peak_mib": mem}


def print_model(
    name: str, med: dict[str, float], agreement: dict[str, str], mem: dict[str, float], composites: list[str]
) -> None:
    floor = med["floor"]
    print(f"\n## {name}  (forward {med['forward']:.3f}s, floor = forward + input gradient {floor:.3f}s)")
    print("| composite | ours s | ours ÷ floor | Zennit ÷ floor | ours vs Zennit | Captum ÷ floor | "
          "max|Δ|/max|R| vs Zennit | peak MiB ours / floor | Zennit peak ÷ floor |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|")
    for c in composites:
        o, z = med[f"ours:{c}"], med[f"zennit:{c}"]
        cap = med.get("captum:epsilon") if c == "epsilon" else None
        cap_s = f"{cap / floor:.2f}" if cap else "—"
        m_o = mem.get(f"ours:{c}")
        m_f = mem.get("floor")
        m_z = mem.get(f"zennit:{c}")
        mem_s = f"{m_o:.0f} / {m_f:.0f} ({m_o / m_f:.2f}×)" if m_o and m_f else "—"
        memz = f"{m_z / m_f:.2f}×" if m_z and m_f else "—"
        print(f"| {c} | {o:.3f} | {o / floor:.2f} | {z / floor:.2f} | {z / o:.2f}× faster | {cap_s} | "
              f"{agreement[c]} | {mem_s} | {memz} |")  # fmt: skip
    if "captum:epsilon" in mem and "floor" in mem:
        print(f"Captum ε peak: {mem['captum:epsilon']:.0f} MiB ({mem['captum:epsilon'] / mem['floor']:.2f}× floor)")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
