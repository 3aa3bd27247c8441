"""Tests for lrpcli.models.sources: loading torchvision weights from the hub cache, offline."""

from __future__ import annotations

import urllib.error
from pathlib import Path
from typing import Any

import pytest
import torch

from conftest import ROOT, write_config
from lrpcli.config import ConfigError, load_config
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


RANDOM_INIT = "model: {{torchvision: squeezenet1_1, weights: none, num_classes: 3{extra}}}\npreprocess: {{resize: 32, crop: 32}}\n"


def random_init(tmp_path: Path, extra: str = "") -> Any:
    return load_config(write_config(tmp_path, RANDOM_INIT.format(extra=extra), name=f"c{len(extra)}.yaml"))


def test_random_initialisation_is_seeded_without_touching_the_callers_rng(tmp_path: Path) -> None:
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(5))
    default = random_init(tmp_path)
    assert default.model.seed == 0 and default.to_dict()["model"]["seed"] == 0
    seeded = random_init(tmp_path, ", seed: 7")
    assert seeded.model.seed == 7

    def logits(cfg: Any) -> torch.Tensor:
        state = torch.get_rng_state()
        loaded = load_model(cfg.model)
        assert torch.equal(torch.get_rng_state(), state)  # the caller's generator is untouched
        assert "seed" in loaded.weights_source
        with torch.no_grad():
            return loaded.module(x)

    first = logits(default)
    torch.manual_seed(123)  # whatever the caller's state, the same seed builds the same network
    torch.testing.assert_close(logits(default), first, rtol=0, atol=0)
    assert not torch.allclose(logits(seeded), first)
    assert default.digest() != seeded.digest()
    assert random_init(tmp_path, ", seed: 0").digest() == default.digest()


def test_seed_is_refused_with_weights_and_must_be_a_whole_number(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"model\.seed: seeds the random initialisation of 'weights: none'"):
        load_config(write_config(tmp_path, "model: {torchvision: resnet18, weights: IMAGENET1K_V1, seed: 1}\n"))
    with pytest.raises(ConfigError, match=r"model\.seed: expected a whole number"):
        random_init(tmp_path, ", seed: lots")


def test_torchvisions_own_weights_spelling_is_accepted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    plain = load_config(write_config(tmp_path, "model: {torchvision: resnet18, weights: IMAGENET1K_V1}\n", name="a.yaml"))
    spelled = load_config(
        write_config(tmp_path, "model: {torchvision: resnet18, weights: ResNet18_Weights.IMAGENET1K_V1}\n", name="b.yaml")
    )
    assert spelled.model.weights == "IMAGENET1K_V1" and spelled.digest() == plain.digest()
    full = "model: {torchvision: resnet18, weights: torchvision.models.ResNet18_Weights.DEFAULT}\n"
    assert load_config(write_config(tmp_path, full, name="c.yaml")).model.weights == "IMAGENET1K_V1"
    with pytest.raises(ConfigError, match="resnet18 has no weights 'ResNet50_Weights.IMAGENET1K_V1'"):
        load_config(write_config(tmp_path, "model: {torchvision: resnet18, weights: ResNet50_Weights.IMAGENET1K_V1}\n"))

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))

    def offline(*args: object, **kwargs: object) -> None:
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(ModelLoadError, match="expected file: .*resnet18-f37072fd.pth"):
        load_model(spelled.model)  # offline: the weights-missing error, not a spelling refusal
