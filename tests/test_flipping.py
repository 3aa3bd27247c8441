"""Tests for lrpcli.evaluation.flipping: pixel-flipping maths on models with known answers."""

from __future__ import annotations

import math
from typing import Any, get_args

import numpy as np
import pytest
import torch
from torch import nn


from lrpcli import Explainer
from lrpcli.evaluation.flipping import (
    OCCLUSION,
    ORDERS,
    PERTURBATIONS,
    RANDOM,
    Curve,
    FlipSettings,
    ImageResult,
    OrderName,
    PatchGrid,
    PerturbationName,
    aopc,
    baseline_ranker,
    evaluate_image,
    flip_curves,
    gaussian_blur,
    input_gradient,
    lrp_ranker,
    patch_order,
    replacement,
)
from lrpcli.evaluation.summary import summarize
from lrpcli.io.preprocess import Preprocess, pixel_bounds


# --------------------------------------------------------------------------- a model with a known answer

P = 4  # patch size
SIDE = 16  # image side: a 4 x 4 grid of 16 patches
KEY_ROW, KEY_COL = 1, 2  # the only patch the model looks at
KEY = KEY_ROW * (SIDE // P) + KEY_COL


class OnePatch(nn.Module):
    """logit 0 = 10 · mean of the key patch (all channels); logit 1 = 0.

    The convolution averages each 4 x 4 patch; the classifier reads only the key patch's unit.
    """

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 1, P, stride=P)
        self.act = nn.ReLU()
        self.flat = nn.Flatten()
        self.fc = nn.Linear((SIDE // P) ** 2, 2)
        with torch.no_grad():
            self.conv.weight.fill_(1 / (3 * P * P))
            self.conv.bias.zero_()
            self.fc.weight.zero_()
            self.fc.bias.zero_()
            self.fc.weight[0, KEY] = 10.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.flat(self.act(self.conv(x))))


def key_image(seed: int = 0) -> torch.Tensor:
    """Dim random pixels, the key patch white: the model's logit 0 is 10."""
    x = torch.rand(3, SIDE, SIDE, generator=torch.Generator().manual_seed(seed)) * 0.3
    x[:, KEY_ROW * P : (KEY_ROW + 1) * P, KEY_COL * P : (KEY_COL + 1) * P] = 1.0
    return x


LOW, HIGH = torch.zeros(3), torch.ones(3)  # this model takes pixels in [0, 1] as they are


def one_patch_rankers(model: nn.Module) -> dict[str, Any]:
    return {
        "epsilon_plus_flat": lrp_ranker(Explainer(model, "epsilon_plus_flat")),
        "epsilon": lrp_ranker(Explainer(model, "epsilon")),
        "gradient": baseline_ranker("gradient", model),
        "gradient_x_input": baseline_ranker("gradient_x_input", model),
    }


@pytest.mark.parametrize("perturbation", ["zero", "uniform"])
def test_morf_lrp_removes_the_key_patch_first_random_later(perturbation: str) -> None:
    model = OnePatch().eval()
    x = key_image()
    steps = (SIDE // P) ** 2
    s = FlipSettings(patch=P, steps=steps, perturbation=perturbation, random_runs=40, batch_size=9)
    result = evaluate_image(model, x, one_patch_rankers(model), s, low=LOW, high=HIGH)
    assert result.target == 0 and result.logit == pytest.approx(10.0)
    for name in ("epsilon_plus_flat", "epsilon", "gradient", "gradient_x_input"):
        curve = torch.tensor(result.curves[name].logits)
        assert curve[0] == pytest.approx(10.0)
        if perturbation == "zero":
            assert float(curve[1]) == pytest.approx(0.0, abs=1e-5)  # the key patch went first
        else:
            assert float(curve[1]) < 9.0  # noise of mean 0.5 replaced the white key patch
        # nothing else matters to the model: the curve stays where step 1 left it
        assert torch.allclose(curve[1:], curve[1].expand(steps), atol=1e-5), name
    if perturbation == "zero":  # known answer: drop 10 at every k >= 1
        assert result.curves["epsilon_plus_flat"].aopc_logit == pytest.approx(10 * steps / (steps + 1), abs=1e-4)
    # each random run drops when it reaches the key patch, at step p: AOPC = drop · (L + 1 − p) / (L + 1)
    drop = 10.0 - result.curves["epsilon"].logits[1]
    runs = result.curves[RANDOM].aopc_logit_runs
    assert runs is not None and len(runs) == 40
    first_drop = [steps + 1 - a * (steps + 1) / drop for a in runs]
    assert all(abs(p - round(p)) < 1e-3 and 1 <= round(p) <= steps for p in first_drop)
    assert np.mean(first_drop) > 4  # uniform over 1..16 has mean 8.5
    assert result.curves[RANDOM].logits[1] > result.curves["epsilon"].logits[1] + 0.5 * drop
    for name in ("epsilon_plus_flat", "epsilon"):
        assert result.curves[name].aopc_logit > result.curves[RANDOM].aopc_logit + 0.2 * drop


def test_lerf_removes_the_key_patch_last_and_a_wrong_map_scores_below_random() -> None:
    model = OnePatch().eval()
    x = key_image(1)
    steps = (SIDE // P) ** 2
    s = FlipSettings(patch=P, steps=steps, perturbation="zero", order="lerf", random_runs=10)
    rankers = {"lrp": lrp_ranker(Explainer(model, "epsilon_plus_flat"))}
    lerf = evaluate_image(model, x, rankers, s, low=LOW, high=HIGH)
    curve = lerf.curves["lrp"].logits
    assert curve[: steps] == pytest.approx([10.0] * steps, abs=1e-5) and curve[steps] == pytest.approx(0.0, abs=1e-5)
    assert lerf.curves["lrp"].aopc_logit < lerf.curves[RANDOM].aopc_logit
    # MoRF with a map that hides the key patch (it gets the lowest score) does worse than random
    def anti(x: torch.Tensor, target: int) -> torch.Tensor:
        heat = torch.ones(SIDE, SIDE)
        heat[KEY_ROW * P : (KEY_ROW + 1) * P, KEY_COL * P : (KEY_COL + 1) * P] = -1.0
        return heat

    morf = evaluate_image(model, x, {"anti": anti}, FlipSettings(patch=P, steps=steps, perturbation="zero"), low=LOW, high=HIGH)
    assert morf.curves["anti"].aopc_logit == pytest.approx(10 / (steps + 1), abs=1e-4)
    assert morf.curves["anti"].aopc_logit < morf.curves[RANDOM].aopc_logit


def key_map(x: torch.Tensor, target: int) -> torch.Tensor:
    """A map that knows the answer: the key patch most relevant, a gradient elsewhere (no ties)."""
    heat = torch.arange(SIDE * SIDE, dtype=torch.float32).view(SIDE, SIDE) / (SIDE * SIDE)
    heat[KEY_ROW * P : (KEY_ROW + 1) * P, KEY_COL * P : (KEY_COL + 1) * P] = 10.0
    return heat


def test_both_orders_share_the_fill_lerf_reverses_morf_and_srg_is_the_difference() -> None:
    model = OnePatch().eval()
    x = key_image(2)
    steps = (SIDE // P) ** 2
    base = dict(patch=P, steps=steps, perturbation="uniform", random_runs=6)
    both = evaluate_image(model, x, {"key": key_map}, FlipSettings(order="both", **base), low=LOW, high=HIGH)
    morf = evaluate_image(model, x, {"key": key_map}, FlipSettings(order="morf", **base), low=LOW, high=HIGH)
    lerf = evaluate_image(model, x, {"key": key_map}, FlipSettings(order="lerf", **base), low=LOW, high=HIGH)
    assert both.order == "both" and both.lerf_curves is not None and morf.lerf_curves is None
    assert list(both.curves) == list(both.lerf_curves) == ["key", RANDOM]
    # curves keeps meaning MoRF; LeRF of a map without ties is the lerf order's curve
    for name in ("key", RANDOM):
        assert both.curves[name].logits == pytest.approx(morf.curves[name].logits, abs=1e-5)
    assert both.lerf_curves["key"].logits == pytest.approx(lerf.curves["key"].logits, abs=1e-5)
    drop = 10.0 - both.curves["key"].logits[1]  # the key patch went first in MoRF, last in LeRF
    assert both.lerf_curves["key"].logits[:steps] == pytest.approx([10.0] * steps, abs=1e-5)
    assert both.lerf_curves["key"].logits[steps] == pytest.approx(10.0 - drop, abs=1e-5)
    srg = both.srg()
    assert srg["key"] == pytest.approx(drop * steps / (steps + 1) - drop / (steps + 1), abs=1e-4)
    assert srg["key"] == pytest.approx(both.curves["key"].aopc_logit - both.lerf_curves["key"].aopc_logit)
    # random: each run's LeRF is its reversed permutation, so the key patch at step p comes at L + 1 − p
    m_runs, l_runs = both.curves[RANDOM].aopc_logit_runs, both.lerf_curves[RANDOM].aopc_logit_runs
    assert m_runs is not None and l_runs is not None
    for a_m, a_l in zip(m_runs, l_runs):
        p_m, p_l = steps + 1 - a_m * (steps + 1) / drop, steps + 1 - a_l * (steps + 1) / drop
        assert p_m + p_l == pytest.approx(steps + 1, abs=1e-3)
    with pytest.raises(ValueError, match="order 'both'"):
        morf.srg()
    assert set(both.by_order()) == {"morf", "lerf"} and set(lerf.by_order()) == {"lerf"}


@pytest.mark.parametrize(("order", "given_target"), [("morf", False), ("both", False), ("both", True)])
def test_forward_passes_are_minimal_and_the_clean_one_is_shared(order: str, given_target: bool) -> None:
    model = OnePatch().eval()
    sizes: list[int] = []
    model.register_forward_hook(lambda m, i, o: sizes.append(i[0].shape[0]))
    steps, runs = 5, 3
    s = FlipSettings(patch=P, steps=steps, order=order, random_runs=runs, batch_size=8)
    maps = {"a": key_map, "b": lambda x, t: -key_map(x, t)}  # maps that run no forward pass
    evaluate_image(model, key_image(), maps, s, low=LOW, high=HIGH, target=0 if given_target else None)
    per_order = steps * (len(maps) + runs)
    assert sum(sizes) == 1 + per_order * len(s.orders)  # one clean forward, then L per order
    assert max(sizes) <= 8


def test_occlusion_baseline_finds_the_key_patch() -> None:
    model = OnePatch().eval()
    steps = (SIDE // P) ** 2
    s = FlipSettings(patch=P, steps=steps, perturbation="zero", order="both", random_runs=2, batch_size=5)
    result = evaluate_image(model, key_image(), {}, s, low=LOW, high=HIGH, occlusion=True)
    assert list(result.curves) == [OCCLUSION, RANDOM]
    assert result.curves[OCCLUSION].logits[1] == pytest.approx(0.0, abs=1e-5)  # the key patch first
    assert result.curves[OCCLUSION].aopc_logit == pytest.approx(10 * steps / (steps + 1), abs=1e-4)
    assert result.srg()[OCCLUSION] == pytest.approx(10 * (steps - 1) / (steps + 1), abs=1e-4)


# --------------------------------------------------------------------------- the pieces


def test_patch_grid_sums_each_patch_including_ragged_edges() -> None:
    grid = PatchGrid(10, 7, 4)
    assert (grid.rows, grid.cols, grid.count) == (3, 2, 6)
    heat = torch.arange(70, dtype=torch.float32).view(10, 7)
    expected = [
        float(heat[r * 4 : (r + 1) * 4, c * 4 : (c + 1) * 4].sum()) for r in range(3) for c in range(2)
    ]
    assert grid.scores(heat).tolist() == expected
    ids = grid.pixel_ids()
    assert ids[9, 6] == 5 and ids[0, 3] == 0 and ids[4, 4] == 3
    with pytest.raises(ValueError):
        PatchGrid(8, 8, 9)
    with pytest.raises(ValueError):
        grid.scores(torch.zeros(7, 10))


def test_patch_order_breaks_ties_at_random_but_reproducibly() -> None:
    scores = torch.tensor([1.0, 0.0, 0.0, 0.0, 2.0, 0.0, float("nan")])
    first = patch_order(scores, "morf", torch.Generator().manual_seed(3))
    assert first[:2].tolist() == [4, 0] and first[-1] == 6  # NaN counts as least relevant
    assert first.tolist() == patch_order(scores, "morf", torch.Generator().manual_seed(3)).tolist()
    tie_orders = {tuple(patch_order(scores, "morf", torch.Generator().manual_seed(s))[2:6].tolist()) for s in range(20)}
    assert len(tie_orders) > 1 and all(sorted(t) == [1, 2, 3, 5] for t in tie_orders)
    lerf = patch_order(scores[:6], "lerf", torch.Generator().manual_seed(0))
    assert lerf[-2:].tolist() == [0, 4]


def test_perturbations_are_pixel_space_values_mapped_through_the_normalisation() -> None:
    pp = Preprocess(8, 8, (0.5, 0.4, 0.3), (0.25, 0.2, 0.1))
    low, high = pixel_bounds(pp)
    mean = torch.tensor(pp.mean).view(3, 1, 1)
    std = torch.tensor(pp.std).view(3, 1, 1)
    pixels = torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(0))
    x = (pixels - mean) / std

    def back(t: torch.Tensor) -> torch.Tensor:
        return t * std + mean

    g = torch.Generator().manual_seed(1)
    zero = back(replacement(x, "zero", low, high, patch=4, generator=g))
    assert torch.allclose(zero, torch.zeros_like(zero), atol=1e-6)
    uniform = back(replacement(x, "uniform", low, high, patch=4, generator=g))
    assert float(uniform.min()) >= -1e-6 and float(uniform.max()) <= 1 + 1e-6
    assert abs(float(uniform.mean()) - 0.5) < 0.03 and float(uniform.std()) > 0.25
    avg = back(replacement(x, "mean", low, high, patch=4, generator=g))
    assert torch.allclose(avg, pixels.mean(dim=(1, 2), keepdim=True).expand_as(pixels), atol=1e-5)
    blurred = back(replacement(x, "blur", low, high, patch=4, generator=g))
    assert torch.allclose(blurred, gaussian_blur(pixels, 2.0), atol=1e-5)  # blur commutes with normalising
    assert float(blurred.std()) < 0.5 * float(pixels.std())
    flat = torch.full((3, 9, 9), 0.7)
    assert torch.allclose(gaussian_blur(flat, 3.0), flat, atol=1e-6)


def test_aopc_is_the_mean_drop_over_all_steps_including_zero() -> None:
    assert float(aopc(torch.tensor([5.0, 3.0, 1.0]))) == pytest.approx((0 + 2 + 4) / 3)
    assert aopc(torch.tensor([[1.0, 2.0], [4.0, 0.0]])).tolist() == [-0.5, 2.0]


def test_all_perturbed_copies_go_through_the_model_in_bounded_batches() -> None:
    model = OnePatch().eval()
    sizes: list[int] = []
    model.register_forward_hook(lambda m, i, o: sizes.append(i[0].shape[0]))
    x = key_image()
    grid = PatchGrid(SIDE, SIDE, P)
    orders = [torch.randperm(16, generator=torch.Generator().manual_seed(s)) for s in range(3)]
    fill = torch.rand(3, SIDE, SIDE, generator=torch.Generator().manual_seed(9))
    small = flip_curves(model, x, 0, orders, grid, fill, 10, batch_size=4)
    assert sum(sizes) == 1 + 3 * 10 and max(sizes) == 4  # the clean image once, then 10 per order
    sizes.clear()
    large = flip_curves(model, x, 0, orders, grid, fill, 10, batch_size=64)
    assert sizes == [31]
    assert small[0].shape == (3, 11) and torch.allclose(small[0], large[0]) and torch.allclose(small[1], large[1])
    # step k replaced exactly the first k patches of the order
    k, order = 4, orders[1]
    expected = x.clone()
    ids = grid.pixel_ids()
    for patch in order[:k].tolist():
        expected[:, ids == patch] = fill[:, ids == patch]
    with torch.no_grad():
        direct = model(expected[None])[0]
    assert float(small[0][1, k]) == pytest.approx(float(direct[0]), abs=1e-5)
    assert float(small[1][1, k]) == pytest.approx(float(direct.softmax(0)[0]), abs=1e-6)


def test_gradient_baselines_leave_parameter_gradients_alone() -> None:
    model = OnePatch().eval()
    x = key_image()
    grad = input_gradient(model, x, 0)
    assert all(p.grad is None for p in model.parameters())
    # d logit0 / d x = 10 / 48 on the key patch, 0 elsewhere
    key = torch.zeros(SIDE, SIDE, dtype=torch.bool)
    key[KEY_ROW * P : (KEY_ROW + 1) * P, KEY_COL * P : (KEY_COL + 1) * P] = True
    assert torch.allclose(grad[:, key], torch.full_like(grad[:, key], 10 / 48))
    assert float(grad[:, ~key].abs().max()) == 0.0
    gxi = baseline_ranker("gradient_x_input", model)(x, 0)
    assert float(gxi.sum()) == pytest.approx(10.0, rel=1e-5)  # linear model without bias: Σ x·∂f/∂x = f
    with pytest.raises(ValueError):
        baseline_ranker(RANDOM, model)


def test_summary_mean_standard_error_and_ranking_direction() -> None:
    def result(values: dict[str, float]) -> ImageResult:
        r = ImageResult(target=0, logit=1.0, probability=0.5)
        for name, a in values.items():
            r.curves[name] = Curve([1.0, 1.0 - a], [0.5, 0.4], a, 0.1)
        return r

    results = [result({"a": 1.0, "b": 3.0}), result({"a": 2.0, "b": 1.0}), result({"a": 3.0, "b": 2.0})]
    summary = summarize(results, "morf")
    a = summary["explainers"]["a"]
    assert a["aopc_logit"]["mean"] == pytest.approx(2.0)
    assert a["aopc_logit"]["se"] == pytest.approx(1.0 / math.sqrt(3))
    assert a["mean_curve"]["logit_drop"] == pytest.approx([0.0, 2.0])
    results.append(result({"a": 2.0, "b": 10.0}))
    assert [r["explainer"] for r in summarize(results, "morf")["ranking"]] == ["b", "a"]
    as_lerf = [ImageResult(r.target, r.logit, r.probability, r.curves, order="lerf") for r in results]
    assert [r["explainer"] for r in summarize(as_lerf, "lerf")["ranking"]] == ["a", "b"]
    one = summarize(results[:1], "morf")["explainers"]["a"]
    assert one["aopc_logit"]["se"] is None and one["mean_curve"]["logit_drop_se"] is None


def test_option_choices_match_the_implemented_modes() -> None:
    assert get_args(PerturbationName) == tuple(PERTURBATIONS)
    assert get_args(OrderName) == tuple(ORDERS)
    with pytest.raises(ValueError):
        FlipSettings(perturbation="noise")


# --------------------------------------------------------------------------- command line


