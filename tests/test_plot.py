"""Tests for lrpcli.evaluation.plot: the labels and the picture of evaluation.png."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from lrpcli.evaluation.flipping import Curve, ImageResult
from lrpcli.evaluation.summary import summarize
from lrpcli.evaluation.plot import legend_label, mean_se_text, plot_evaluation, render_evaluation

TAB_RED = np.array([214, 39, 40])
TAB_OLIVE = np.array([188, 189, 34])


def summary(images: int = 3, order: str = "morf") -> dict:
    results = []
    for n in range(images):
        steps = torch.arange(11, dtype=torch.float64)
        lrp = (10 - steps * (0.9 + 0.05 * n)).tolist()
        grad = (10 - steps * (0.3 + 0.05 * n)).tolist()
        curves = {
            "epsilon": Curve(lrp, [v / 10 for v in lrp], 4.0 + n, 0.4),
            "gradient_x_input": Curve(grad, [v / 10 for v in grad], 1.5 + n, 0.15),
        }
        result = ImageResult(target=1, logit=10.0, probability=1.0, curves=curves, order=order)
        if order == "both":  # LeRF: the curves fall 5x slower
            result.lerf_curves = {
                name: Curve([10 - (10 - v) / 5 for v in c.logits], c.probabilities, c.aopc_logit / 5, 0.1)
                for name, c in curves.items()
            }
        results.append(result)
    return summarize(results, order, resamples=200)


def coloured_pixels(png: bytes, colour: np.ndarray, tolerance: int = 12) -> int:
    pixels = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)
    return int((np.abs(pixels - colour).max(axis=-1) <= tolerance).sum())


def test_text_helpers() -> None:
    assert mean_se_text({"mean": 2.3456, "se": 0.4}, 2) == "2.35 ± 0.40"
    assert mean_se_text({"mean": 2.3456, "se": None}, 1) == "2.3"
    stats = {"aopc_logit": {"mean": 2.31, "se": 0.4}, "aopc_probability": {"mean": 0.21, "se": 0.03}}
    assert legend_label("epsilon", stats) == "epsilon   AOPC logit 2.31 ± 0.40, prob. 0.210 ± 0.030"


def test_the_picture_draws_every_explainer_in_its_colour() -> None:
    png = render_evaluation(summary(), title="t", subtitle="s", xlabel="k")
    image = Image.open(io.BytesIO(png))
    assert image.size == (1375, 682)  # 12.5 x 6.2 inches at 110 dpi
    assert coloured_pixels(png, TAB_RED) > 500  # the LRP curves (and their legend line)
    assert coloured_pixels(png, TAB_OLIVE) > 200  # gradient × input, dotted


def test_one_image_has_no_error_band(tmp_path: Path) -> None:
    path = tmp_path / "evaluation.png"
    plot_evaluation(summary(images=1), path, title="t", subtitle="s", xlabel="k")
    banded = render_evaluation(summary(images=3), title="t", subtitle="s", xlabel="k")
    # the band is the curve colour at 15 % opacity on white: light red, only where there is an error
    light_red = np.array([249, 222, 222])
    assert coloured_pixels(path.read_bytes(), light_red, 6) < coloured_pixels(banded, light_red, 6)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["evaluation.png"]  # written atomically


def test_both_orders_get_morf_and_lerf_columns_and_an_srg_legend() -> None:
    both = summary(order="both")
    assert legend_label("epsilon", both["explainers"]["epsilon"]) == (
        "epsilon   SRG 4.00 ± 0.46 (MoRF 5.00 ± 0.58, LeRF 1.00 ± 0.12)"  # SRG per image 0.8 · (4, 5, 6)
    )
    png = render_evaluation(both, title="t", subtitle="s", xlabel="k")
    image = Image.open(io.BytesIO(png))
    assert image.size == (1375, 1144)  # 12.5 x 10.4 inches: two rows of panels
    pixels = np.asarray(image.convert("RGB")).astype(int)
    red = np.abs(pixels - TAB_RED).max(axis=-1) <= 12
    upper = red[: image.size[1] // 2]
    # the LRP curve is drawn in both upper panels (MoRF left, LeRF right)
    assert upper[:, : image.size[0] // 2].sum() > 300 and upper[:, image.size[0] // 2 :].sum() > 300
