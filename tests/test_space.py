"""The search space of lrp tune: blocks, candidates, and that every candidate builds."""

from __future__ import annotations

import pytest
import torch

from lrpcli.core.composites import get_composite
from lrpcli.core.composites import LayerInfo
from lrpcli.tuning.space import SPACES, block_prefixes, search_space

EFFNET_LIKE = ["stem_conv"] + [f"blocks.{b}.{part}" for b in range(6) for part in ("dw_conv", "project_conv")] + [
    "head_conv",
    "classifier",
]


def test_block_prefixes_in_execution_order() -> None:
    assert block_prefixes(EFFNET_LIKE) == [f"blocks.{b}" for b in range(6)]
    assert block_prefixes(["features.0", "features.10", "classifier.1"]) == ["features.0", "features.10", "classifier.1"]
    assert block_prefixes(["layer1.0.conv1", "layer1.0.conv2", "layer1.1.conv1", "fc"]) == ["layer1.0", "layer1.1"]
    assert block_prefixes(["conv", "fc"]) == []


def test_space_sizes_and_unique_names() -> None:
    sizes = {}
    for space in SPACES:
        cands = search_space(EFFNET_LIKE, space)
        names = [c.name for c in cands]
        assert len(names) == len(set(names))
        sizes[space] = len(cands)
    assert sizes["small"] < sizes["standard"] < sizes["large"]
    with pytest.raises(ValueError, match="choose one of"):
        search_space(EFFNET_LIKE, "huge")


def test_block_split_gives_lower_blocks_gamma_and_upper_epsilon() -> None:
    cands = {c.name: c for c in search_space(EFFNET_LIKE, "small")}
    split = next(c for n, c in cands.items() if "<" in n and n.startswith("flat/") and "absorb" in n)
    infos = [LayerInfo(i, n, "linear" if n == "classifier" else "conv", "Conv2d", n == "classifier") for i, n in enumerate(EFFNET_LIKE)]
    rules = {lay.name: a.rule for lay, a in zip(infos, get_composite(split.rules, **split.options).assign(infos))}
    assert rules["stem_conv"].name == "flat" and rules["stem_conv"].coverage
    assert rules["blocks.0.dw_conv"].name == "gamma" and rules["blocks.2.project_conv"].name == "gamma"
    assert rules["blocks.3.dw_conv"].name == "epsilon" and rules["head_conv"].name == "epsilon"
    assert rules["classifier"].name == "epsilon" and rules["classifier"].epsilon == 1e-6


def test_every_candidate_builds_and_explains() -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3, stride=2, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(4, 4, 3, padding=1),
        torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(4, 3),
    ).eval()  # fmt: skip
    from lrpcli.core.engine import Explainer

    x = torch.rand(1, 3, 8, 8)
    for c in search_space(["0", "2", "6"], "standard"):
        exp = Explainer(model, c.rules, low=0.0, high=1.0, **c.options)(x)
        assert float(exp.ledger.relative_error().max()) <= 1e-5, c.name
