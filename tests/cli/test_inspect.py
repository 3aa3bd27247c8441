"""`lrp inspect`: the rule every graph step gets, why, and the canonizations applied."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


import pytest

from conftest import lrp




def test_json_lists_every_step_with_rule_reason_and_canonizations() -> None:
    result = lrp("inspect", "--model", "resnet18", "--composite", "epsilon_gamma_box", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["composite"] == "epsilon_gamma_box" and "resnet18" in data["model"]
    affine = [r for r in data["steps"] if r["kind"] == "affine"]
    assert len(affine) == 21  # 20 convolutions (BatchNorms folded in) + the classifier
    assert affine[0]["module"] == "conv1" and affine[0]["why"] == "first layer"
    assert affine[0]["rule"].startswith("zbox") and "folded bn1 into conv1" in affine[0]["canonization"]
    assert {r["rule"].split("(")[0] for r in affine[1:-1]} == {"gamma"}
    assert affine[-1]["module"] == "fc" and affine[-1]["rule"].startswith("epsilon")
    sums = [r for r in data["steps"] if r["kind"] == "norm"]
    assert len(sums) == 9 and all(r["rule"].startswith("norm(") for r in sums)  # 8 residual adds + avgpool
    assert "folded bn1 into conv1" in data["canonizations"]
    assert len([c for c in data["canonizations"] if c.startswith("folded layer")]) == 19
    assert data["summary"]["by_kind"]["affine"] == 21
    assert sum(data["summary"]["affine_rules"].values()) == 21


def test_a_torchvision_model_named_with_model_gets_imagenet_preprocessing(tmp_path: Path) -> None:
    """z^B bounds from ImageNet's mean and std, not the built-in config's EfficientNet ones, and the
    same as a config naming that model."""
    imagenet = {"low": [-2.117904, -2.035714, -1.804444], "high": [2.248908, 2.428571, 2.64]}

    def bounds(*args: str | Path) -> dict[str, list[float]]:
        result = lrp("inspect", *args, "--composite", "epsilon_gamma_box", "--json")
        assert result.exit_code == 0, result.output
        first = json.loads(result.stdout)["steps"]
        rule = next(r["rule"] for r in first if r["kind"] == "affine")
        low, high = rule.split("low=")[1].split("], high=")
        return {"low": json.loads(low + "]"), "high": json.loads(high.split("]")[0] + "]")}

    named = bounds("--model", "resnet18")
    config = tmp_path / "resnet18.yaml"
    config.write_text("model: {torchvision: resnet18, weights: none}\n", encoding="utf-8")
    assert bounds("-c", config) == named
    for key, values in imagenet.items():
        assert named[key] == pytest.approx(values, abs=1e-5), key
    # an embedded model named with --model keeps its own (EfficientNet-Lite) preprocessing
    assert bounds("--model", "efficientnet_lite0")["low"] == pytest.approx([-0.992032] * 3, abs=1e-5)


def test_table_names_layer_norm_linearisation_and_gates() -> None:
    result = lrp("inspect", "--model", "convnext_tiny")
    assert result.exit_code == 0, result.output
    assert "layer_norm(1/σ constant)" in result.stdout
    assert "1/σ held constant" in result.stdout
    assert "Canonizations applied" in result.stdout and "Steps by kind" in result.stdout
    gated = lrp("inspect", "--model", "mobilenet_v3_small", "--all")
    assert "signal × gate: all to the signal" in gated.stdout
    assert "element-wise: relevance passes unchanged" in gated.stdout  # --all shows the Pass steps


def test_embedded_default_model_from_the_default_config() -> None:
    result = lrp("inspect", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert "efficientnet_lite0" in data["model"] and data["composite"] == "custom"
    assert any(c.startswith("folded padding") for c in data["canonizations"])


def test_usage_errors_exit_2_with_a_hint() -> None:
    bad_model = lrp("inspect", "--model", "resnet19")
    assert bad_model.exit_code == 2 and "resnet18" in bad_model.stderr
    bad_preset = lrp("inspect", "--composite", "epsilon_plus_flats")
    assert bad_preset.exit_code == 2 and "did you mean 'epsilon_plus_flat'" in bad_preset.stderr


ODD_MODEL = """\
import torch
from torch import nn


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x):
        return torch.cumsum(self.conv(x), dim=1)


class Odd(nn.Module):
    def __init__(self):
        super().__init__()
        self.block = Block()
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        return self.fc(self.block(x).mean((2, 3)))
"""


def test_unsupported_model_exits_3_naming_op_node_and_module(tmp_path: Path) -> None:
    import torch

    (tmp_path / "odd.py").write_text(ODD_MODEL, encoding="utf-8")
    namespace: dict[str, Any] = {}
    exec(compile(ODD_MODEL, "odd.py", "exec"), namespace)
    torch.save(namespace["Odd"]().state_dict(), tmp_path / "odd.pth")
    config = tmp_path / "odd.yaml"
    config.write_text("model: {python: odd.py:Odd, weights: odd.pth}\npreprocess: {resize: 16, crop: 16}\n")
    refused = lrp("inspect", "--config", config)
    assert refused.exit_code == 2 and "--allow-python" in refused.stderr
    result = lrp("inspect", "--config", config, "--allow-python", tmp_path / "odd.py")
    assert result.exit_code == 3, result.output
    assert "function cumsum (graph node 'cumsum' in module 'block')" in result.stderr
    assert "no LRP rule for this operation" in result.stderr
    assert result.stdout == ""


def test_maxvit_attention_steps_are_named() -> None:
    result = lrp("inspect", "--model", "maxvit_t", "--json")
    assert result.exit_code == 0, result.output
    kinds = {r["kind"] for r in json.loads(result.stdout)["steps"]}
    assert {"mix", "stat", "frozen"} <= kinds
