"""Composites: Zennit's layer assignment for the presets, custom selector maps, and no dot grid."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch.nn as nn

from lrpcli.core.composites import PRESETS, LayerInfo, get_composite
from lrpcli.core.rules import AlphaBeta, Epsilon, Flat, Gamma, LRP0, ZBox, ZPlus

ROOT = Path(__file__).resolve().parents[1]


def layers(*kinds: str) -> list[LayerInfo]:
    names = {"conv": "Conv2d", "linear": "Linear"}
    return [
        LayerInfo(i, f"net.{i}", k, names[k], i == len(kinds) - 1) for i, k in enumerate(kinds)
    ]


NET = layers("conv", "conv", "conv", "linear", "linear")
DENSE_FIRST = layers("linear", "conv", "linear")


@pytest.mark.parametrize(
    "name, first, conv, dense",
    [
        ("epsilon", Epsilon(1e-6), Epsilon(1e-6), Epsilon(1e-6)),
        ("epsilon_plus", ZPlus(), ZPlus(), Epsilon(1e-6)),
        ("epsilon_plus_flat", Flat(), ZPlus(), Epsilon(1e-6)),
        ("epsilon_gamma_box", ZBox(-1.0, 1.0), Gamma(0.25), Epsilon(1e-6)),
        ("epsilon_alpha2_beta1", AlphaBeta(2, 1), AlphaBeta(2, 1), Epsilon(1e-6)),
        ("epsilon_alpha2_beta1_flat", Flat(), AlphaBeta(2, 1), Epsilon(1e-6)),
    ],
)
def test_presets_assign_like_zennit(name, first, conv, dense) -> None:
    rules = [a.rule for a in get_composite(name, low=-1.0, high=1.0, coverage=False).assign(NET)]
    assert rules == [first, conv, conv, dense, dense]


@pytest.mark.parametrize(
    "name", ["epsilon_plus_flat", "epsilon_alpha2_beta1_flat", "epsilon_plus", "epsilon_alpha2_beta1"]
)
def test_presets_normalise_first_layer_coverage_by_default(name) -> None:
    rules = [a.rule for a in get_composite(name, low=-1.0, high=1.0).assign(NET)]
    assert rules[0].coverage is True and "coverage=True" in rules[0].describe()
    assert not any(r.coverage for r in rules[1:])
    zennit = [a.rule for a in get_composite(name, low=-1.0, high=1.0, coverage=False).assign(NET)]
    assert not any(r.coverage for r in zennit) and type(zennit[0]) is type(rules[0])


def test_zbox_keeps_its_own_coverage() -> None:
    # measured: coverage makes z^B's map more gridded, so the preset leaves it off
    assert get_composite("epsilon_gamma_box", low=-1.0, high=1.0).assign(NET)[0].rule == ZBox(-1.0, 1.0)


def test_bias_option_reaches_every_rule_that_has_one() -> None:
    rules = [a.rule for a in get_composite("epsilon_gamma_box", low=-1.0, high=1.0, bias="distribute").assign(NET)]
    assert [getattr(r, "bias", None) for r in rules] == [None, "distribute", "distribute", "distribute", "distribute"]
    custom = get_composite({"preset": "epsilon", "conv": {"rule": "gamma"}}, bias="ignore").assign(NET)
    assert all(a.rule.bias == "ignore" for a in custom)
    pinned = get_composite({"conv": {"rule": "zplus", "bias": "absorb"}, "linear": "epsilon"}, bias="distribute")
    assert [a.rule.bias for a in pinned.assign(NET)] == ["absorb", "absorb", "absorb", "distribute", "distribute"]


def test_first_layer_kinds_follow_zennit() -> None:
    # the *_flat presets treat any first conv/dense layer as first; epsilon_gamma_box only convolutions
    flat = [a.rule for a in get_composite("epsilon_plus_flat").assign(DENSE_FIRST)]
    assert flat == [Flat(coverage=True), ZPlus(), Epsilon(1e-6)]
    box = [a.rule for a in get_composite("epsilon_gamma_box", low=0.0, high=1.0).assign(DENSE_FIRST)]
    assert box == [Epsilon(1e-6), ZBox(0.0, 1.0), Epsilon(1e-6)]


def test_options_reach_the_rules() -> None:
    comp = get_composite("epsilon_gamma_box", epsilon=0.25, gamma=0.5, stabilizer=1e-7, low=-2.0, high=2.0)
    rules = [a.rule for a in comp.assign(NET)]
    assert rules[1] == Gamma(0.5, 1e-7) and rules[3] == Epsilon(0.25) and rules[0] == ZBox(-2.0, 2.0, 1e-7)
    assert comp.norm_stabilizer == 1e-7


def test_custom_map_precedence_first_last_name_type() -> None:
    comp = get_composite(
        {
            "preset": "epsilon_plus",
            "first": "flat",
            "last": "lrp0",
            "net.2": {"rule": "gamma", "gamma": 1.0},
            "Linear": {"rule": "epsilon", "epsilon": 0.1},
        }
    )
    got = comp.assign(NET)
    assert [a.rule for a in got] == [Flat(), ZPlus(), Gamma(1.0), Epsilon(0.1), LRP0()]
    assert [a.reason for a in got] == [
        "first layer", "type conv", "name matches 'net.2'", "type Linear", "last layer",
    ]  # fmt: skip
    assert comp.name == "epsilon_plus+custom"


def test_custom_map_without_preset_must_cover_every_layer() -> None:
    comp = get_composite({"conv": "zplus"})
    with pytest.raises(ValueError, match="assigns no rule to layer 'net.3'.*add a 'linear' entry"):
        comp.assign(NET)


def test_errors_name_the_key_and_the_fix() -> None:
    with pytest.raises(ValueError, match="rules.conv: unknown rule 'gama'"):
        get_composite({"conv": "gama"})
    with pytest.raises(ValueError, match="rules.conv: rule 'gamma' got parameters"):
        get_composite({"conv": {"rule": "gamma", "gama": 1}})
    with pytest.raises(ValueError, match="rules.linear: expected a 'rule' name"):
        get_composite({"linear": {"epsilon": 1}})
    with pytest.raises(ValueError, match="unknown composite 'eps'; choose one of"):
        get_composite("eps")
    with pytest.raises(TypeError, match="unknown option"):
        get_composite("epsilon", gamm=0.3)


def test_every_preset_is_described() -> None:
    for name in PRESETS:
        assert get_composite(name, low=0.0, high=1.0).describe()


def test_module_type_selector_names_torch_classes() -> None:
    assert nn.Conv2d.__name__ == "Conv2d"  # the selector uses the class name as written in PyTorch
    comp = get_composite({"Conv2d": "zplus", "linear": "epsilon"})
    assert [a.rule for a in comp.assign(NET)][:3] == [ZPlus()] * 3


def period2_energy(heat: np.ndarray) -> float:
    """Share of a map's energy (DC left out) at the period-2 frequency of either axis: the dot grid."""
    f = np.abs(np.fft.fft2(heat.astype(np.float64))) ** 2
    f[0, 0] = 0.0
    mask = np.zeros(f.shape, dtype=bool)
    mask[f.shape[0] // 2, :] = True
    mask[:, f.shape[1] // 2] = True
    return float(f[mask].sum() / f.sum())


def test_no_dot_grid_on_a_real_photo() -> None:
    """Each preset's map and the default config's on the embedded model (3×3 stride-2 stem) have period-2 energy near the
    gradient's; Zennit's exact first-layer rules (coverage=False) show the grid, so the check can fail."""
    from lrpcli.config.loader import load_config
    from lrpcli.core.engine import Explainer
    from lrpcli.evaluation.flipping import input_gradient
    from lrpcli.io.decode import load_image
    from lrpcli.io.preprocess import preprocess
    from lrpcli.models.sources import load_model

    cfg = load_config(None)
    model = load_model(cfg.model, "cpu").module
    x = preprocess(load_image(ROOT / "sample_images" / "coffee.png").image, cfg.preprocess)[0]
    target = int(model(x[None]).argmax())
    gradient = period2_energy(input_gradient(model, x, target).sum(0).numpy())
    assert gradient < 0.01
    opts = cfg.composite_options()
    for name in PRESETS:
        heat = Explainer(model, name, **opts)(x[None], target).relevance[0].sum(0).numpy()
        assert period2_energy(heat) <= 4 * gradient, (name, period2_energy(heat), gradient)
    default = Explainer(model, cfg.composite, **opts)(x[None], target).relevance[0].sum(0).numpy()
    assert period2_energy(default) <= 4 * gradient, ("default config", period2_energy(default), gradient)
    gridded = Explainer(model, "epsilon_plus_flat", **{**opts, "coverage": False})(x[None], target)
    assert period2_energy(gridded.relevance[0].sum(0).numpy()) > 20 * gradient
