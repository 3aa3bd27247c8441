"""Tests for lrpcli.models.sources: loading torchvision weights from the hub cache, offline."""

from __future__ import annotations

import urllib.error
from pathlib import Path

import pytest
import torch

from conftest import ROOT, write_config
from lrpcli.config import load_config
from lrpcli.models.registry import torchvision_weights
from lrpcli.models.sources import load_model
from lrpcli.models.spec import ModelLoadError
from lrpcli.models.weights import cached_weights_path


def test_missing_torchvision_weights_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))

    def offline(*args: object, **kwargs: object) -> None:
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    cfg = load_config(ROOT / "configs" / "resnet50.yaml")
    expected = tmp_path / "torch" / "hub" / "checkpoints" / "resnet50-0676ba61.pth"
    assert cached_weights_path(torchvision_weights("resnet50", "IMAGENET1K_V1")) == expected
    with pytest.raises(ModelLoadError) as info:
        load_model(cfg.model)
    text = str(info.value)
    assert f"expected file: {expected}" in text
    assert "https://download.pytorch.org/models/resnet50-0676ba61.pth" in text
    assert "model: {file: resnet50-0676ba61.pth, arch: resnet50, num_classes: 1000}" in text


def test_cached_torchvision_weights_are_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny_state: dict[str, torch.Tensor]
) -> None:
    import torchvision

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    weights = torchvision_weights("squeezenet1_1", "IMAGENET1K_V1")
    torch.manual_seed(1)
    state = torchvision.models.get_model("squeezenet1_1", weights=None).state_dict()
    path = cached_weights_path(weights)
    path.parent.mkdir(parents=True)
    torch.save(state, path)
    spec = load_config(write_config(tmp_path, "model: {torchvision: squeezenet1_1, weights: IMAGENET1K_V1}\n")).model
    loaded = load_model(spec)  # from the cache, no download
    assert loaded.categories[967] == "espresso"
    assert str(path) in loaded.weights_source
    torch.testing.assert_close(loaded.module.state_dict()["features.0.weight"], state["features.0.weight"])
    path.write_bytes(b"garbage")
    with pytest.raises(ModelLoadError, match="cached file may be damaged"):
        load_model(spec)
