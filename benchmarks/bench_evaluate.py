"""``lrp evaluate``'s core against its floor: the forward passes it cannot avoid, in one process.

For each image, :func:`lrpcli.evaluation.flipping.evaluate_image` runs with the default
explainer set of ``lrp evaluate`` (the default config's composite, gradient, gradient × input,
random) and ``--order both``. Its inference-mode forward passes (the perturbed copies and the
clean image) are recorded once, untimed; the floor is those same batches, same sizes, same
inputs, through the model under ``torch.inference_mode()`` and nothing else. Timed runs
alternate (evaluate, floor, evaluate, floor, ...) after a warm-up; the table gives the median
ratio ``evaluate ÷ floor`` over images and repetitions. What the ratio adds on top of the
floor: the relevance maps (one LRP pass, two input gradients), ordering, and building the
perturbed batches. Memory: the recorded batches of one image are held at once (about
``(1 + 2·steps·(3 + random_runs)) · 0.6 MB`` for a 224 crop: ~1 GB at the defaults).

    OMP_NUM_THREADS=1 python benchmarks/bench_evaluate.py [--images 2] [--reps 1] [--steps 100]
        [--batch 32] [--random-runs 5] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2)
    parser.add_argument("--reps", type=int, default=1)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--random-runs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from lrpcli.config import load_config
    from lrpcli.core.engine import Explainer
    from lrpcli.evaluation.flipping import FlipSettings, baseline_ranker, evaluate_image, lrp_ranker
    from lrpcli.io.decode import load_image
    from lrpcli.io.preprocess import pixel_bounds, preprocess
    from lrpcli.models.sources import load_model
    from lrpcli.run.allocator import tune_allocator

    print(f"allocator: {tune_allocator()}; threads: {torch.get_num_threads()}")
    cfg = load_config(None)
    model = load_model(cfg.model).module.eval()
    explainer = Explainer(model, cfg.rules, ignore_bias=cfg.ignore_bias, **cfg.composite_options())
    rankers = {
        cfg.composite_name: lrp_ranker(explainer),
        "gradient": baseline_ranker("gradient", model),
        "gradient_x_input": baseline_ranker("gradient_x_input", model),
    }
    settings = FlipSettings(steps=args.steps, order="both", random_runs=args.random_runs, batch_size=args.batch)
    low, high = pixel_bounds(cfg.preprocess)
    paths = sorted(p for p in (ROOT / "sample_images").iterdir() if p.suffix in (".png", ".jpg"))[: args.images]
    images = [preprocess(load_image(p).image, cfg.preprocess)[0] for p in paths]

    def run(x: torch.Tensor, index: int) -> None:
        evaluate_image(model, x, rankers, settings, low=low, high=high, image=index)

    recorded: list[torch.Tensor] = []

    def record(module: torch.nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        if torch.is_inference_mode_enabled():
            recorded.append(inputs[0].clone())

    def floor() -> None:
        with torch.inference_mode():
            for batch in recorded:
                model(batch)

    expected = 1 + 2 * args.steps * (len(rankers) + args.random_runs)
    ratios: list[float] = []
    for index, x in enumerate(images):
        recorded.clear()
        handle = model.register_forward_pre_hook(record)
        run(x, index)  # untimed: records the batches, and warms up
        handle.remove()
        copies = sum(b.shape[0] for b in recorded)
        assert copies == expected, f"{copies} images forwarded, expected {expected}"
        with torch.inference_mode():  # warm-up of the floor's path
            for batch in recorded[:3]:
                model(batch)
        for _ in range(args.reps):
            t0 = time.perf_counter()
            run(x, index)
            t1 = time.perf_counter()
            floor()
            t2 = time.perf_counter()
            ratios.append((t1 - t0) / (t2 - t1))
            print(f"{paths[index].name}: evaluate {t1 - t0:.2f} s, floor {t2 - t1:.2f} s "
                  f"({len(recorded)} forward passes, {copies} images), ratio {ratios[-1]:.3f}")  # fmt: skip
    print(f"median evaluate ÷ floor over {len(ratios)} runs: {statistics.median(ratios):.3f}")


if __name__ == "__main__":
    main()
