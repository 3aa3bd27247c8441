"""Tests for lrpcli.evaluation.sanity: layer selection, re-initialisation, Spearman, the check itself."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from lrpcli import Explainer
from lrpcli.evaluation.sanity import affine_layers, randomized_copy, sanity_levels, sanity_summary, spearman


def tiny_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 6, 3, padding=1), nn.ReLU(),
        nn.Flatten(), nn.Linear(6 * 8 * 8, 16), nn.ReLU(), nn.Linear(16, 4),
    ).eval()  # fmt: skip


def test_affine_layers_and_levels() -> None:
    assert affine_layers(tiny_net()) == ["0", "2", "5", "7"]
    assert sanity_levels(1) == {"all": 1}
    assert sanity_levels(2) == {"top 1": 1, "all": 2}
    assert sanity_levels(4) == {"top 1": 1, "top 3": 3, "all": 4}
    with pytest.raises(ValueError, match="no Linear or Conv"):
        sanity_levels(0)


def test_randomized_copy_reinitialises_only_the_top_layers_and_is_seeded() -> None:
    model = tiny_net()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    none = randomized_copy(model, 0, seed=1)
    assert all(torch.equal(none.state_dict()[k], v) for k, v in before.items())
    top = randomized_copy(model, 1, seed=1)
    changed = {k for k, v in top.state_dict().items() if not torch.equal(v, before[k])}
    assert changed == {"7.weight", "7.bias"}
    assert all(torch.equal(model.state_dict()[k], v) for k, v in before.items())  # original untouched
    again = randomized_copy(model, 1, seed=1)
    assert torch.equal(again.state_dict()["7.weight"], top.state_dict()["7.weight"])
    w = top.state_dict()["7.weight"]
    assert float(w.std()) == pytest.approx(float(before["7.weight"].std()), rel=0.3)  # scale kept
    with pytest.raises(ValueError):
        randomized_copy(model, 5, seed=0)


def test_spearman_by_hand() -> None:
    a = torch.tensor([[1.0, 2.0], [2.0, 3.0]])
    assert spearman(a, a) == 1.0
    assert spearman(a, torch.exp(a)) == 1.0  # ranks only
    assert spearman(torch.arange(5.0), -torch.arange(5.0)) == pytest.approx(-1.0)
    # ranks (1, 2.5, 2.5, 4) and (1, 2, 3, 4): 4.5 / √(4.5 · 5)
    assert spearman(a, torch.tensor([1.0, 2.0, 3.0, 4.0])) == pytest.approx(4.5 / math.sqrt(22.5))
    assert math.isnan(spearman(torch.ones(4), torch.arange(4.0)))
    with pytest.raises(ValueError):
        spearman(torch.ones(4), torch.ones(5))


def test_lrp_maps_change_with_random_weights_and_not_without() -> None:
    """The sanity check's own sanity: ρ = 1 with nothing re-initialised, below 1 otherwise."""
    model = tiny_net()
    x = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(2))
    target = int(model(x)[0].argmax())
    original = Explainer(model, "epsilon")(x, target).relevance[0].sum(dim=0)
    rhos = {}
    for layers in (0, 1, 4):
        twin = Explainer(randomized_copy(model, layers, seed=0), "epsilon")
        rhos[layers] = spearman(original, twin(x, target).relevance[0].sum(dim=0))
    assert rhos[0] == 1.0
    assert rhos[1] < 0.999 and rhos[4] < 0.9, rhos


def test_sanity_summary() -> None:
    out = sanity_summary({"lrp": {"top 1": [0.2, 0.4, float("nan")], "all": [0.1]}})
    top = out["lrp"]["top 1"]
    assert top["mean"] == pytest.approx(0.3) and top["se"] == pytest.approx(0.1) and top["images"] == 2
    assert top["undefined"] == 1
    assert out["lrp"]["all"] == {"mean": 0.1, "se": None, "images": 1, "undefined": 0}
