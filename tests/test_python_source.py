"""Tests for lrpcli.models.python_source: a ``python:`` model section validated and round-tripped."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from conftest import write_tiny_model

from lrpcli.config import ConfigError, load_config


def test_config_validation_and_round_trip(tmp_path: Path) -> None:
    config = write_tiny_model(tmp_path / "m", extra="  num_classes: 3\n")
    cfg = load_config(config)
    assert cfg.model.source == "python" and cfg.model.input_size == 16
    again = tmp_path / "again.yaml"
    again.write_text(cfg.to_yaml(), encoding="utf-8")
    assert load_config(again).digest() == cfg.digest()
    assert yaml.safe_load(cfg.to_yaml())["model"]["kwargs"] == {"classes": 3, "width": 4}

    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "model: {python: model.py, weights: nope.pth, kwargs: {layers: [1, 2]}}\n", encoding="utf-8"
    )
    with pytest.raises(ConfigError) as info:
        load_config(bad)
    text = str(info.value)
    assert "model.python: 'model.py': expected FILE.py:ClassName" in text
    assert "model.weights: no such file" in text
    assert "model.kwargs.layers: expected a plain value" in text
