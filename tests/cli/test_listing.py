"""The listing commands: ``lrp models``, ``lrp composites``, ``lrp config check``."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from conftest import ROOT, lrp
from lrpcli import PRESETS


def test_models_listing() -> None:
    result = lrp("models")
    assert result.exit_code == 0
    for word in ("efficientnet_lite0", "resnet50", "vgg16", "IMAGENET1K_V1", "weights_only", "checkpoints"):
        assert word in result.stdout
    for source in ("embedded:", "torchvision:", "file:", "timm:", "huggingface:", "python:"):
        assert f"\n{source}" in result.stdout, source
    assert "timm installed" in result.stdout and "transformers installed" in result.stdout  # the test extra has both


def test_composites_listing() -> None:
    result = lrp("composites")
    assert result.exit_code == 0
    for name in PRESETS:
        assert name in result.stdout
    for rule in ("zbox", "gamma", "flat", "wsquare", "alpha_beta", "lrp0"):
        assert rule in result.stdout
    assert "``" not in result.stdout  # the rules' RST code spans print as plain text
    assert "weights w² (bias b²)" in result.stdout


def test_config_check(tmp_path: Path) -> None:
    result = lrp("config", "check", ROOT / "configs" / "vgg16.yaml")
    assert result.exit_code == 0, result.stderr
    resolved = yaml.safe_load(result.stdout)
    assert resolved["model"] == {"torchvision": "vgg16", "weights": "IMAGENET1K_V1", "num_classes": 1000}
    assert resolved["rules"] == "epsilon_gamma_box"
    assert re.search(r"^# sha256: [0-9a-f]{64}$", result.stdout, re.M)
    assert "is valid" in result.stderr

    bad = tmp_path / "bad.yaml"
    bad.write_text("model: {embedded: efficientnet_lite0}\nrender: {overlay_alpha: 3}\n", encoding="utf-8")
    result = lrp("config", "check", bad)
    assert result.exit_code == 2
    assert f"{bad}: render.overlay_alpha: must be <= 1, got 3" in result.stderr
    assert result.stdout == ""
