"""Tests for lrpcli.models.timm_source: timm architectures with local checkpoints, offline."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from conftest import lrp, noise_file, report, write_config

from lrpcli.config import ConfigError, load_config
from lrpcli.models.sources import load_model
from lrpcli.models.spec import ModelLoadError

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # random weights only: nothing may be downloaded
timm = pytest.importorskip("timm")


def _checkpoint(folder: Path, name: str = "resnet18", classes: int = 5, suffix: str = ".pth") -> tuple[torch.nn.Module, Path]:
    """A randomly initialised timm model and its state dict saved to ``folder``."""
    torch.manual_seed(3)
    model = timm.create_model(name, pretrained=False, num_classes=classes).eval()
    path = folder / f"{name}{suffix}"
    if suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    else:
        torch.save(model.state_dict(), path)
    return model, path


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_logits_equal_timms_own_forward_on_the_same_weights(tmp_path: Path, suffix: str) -> None:
    model, path = _checkpoint(tmp_path, suffix=suffix)
    cfg = load_config(write_config(tmp_path, f"model: {{timm: resnet18, file: {path.name}}}\n"))
    assert cfg.model.source == "timm" and cfg.model.path == path
    loaded = load_model(cfg.model)
    assert loaded.num_classes == 5 and loaded.spec.num_classes == 5  # the class count is read from the checkpoint
    assert loaded.categories == [f"class {i}" for i in range(5)]
    assert "timm resnet18, checkpoint" in loaded.weights_source and "sha256" in loaded.weights_source
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(loaded.module(x), model(x), rtol=0, atol=0)


def test_preprocessing_comes_from_timms_pretrained_config_unless_the_config_sets_it(tmp_path: Path) -> None:
    from timm.data import resolve_data_config
    from timm.models import get_pretrained_cfg

    _, path = _checkpoint(tmp_path)
    data = resolve_data_config(pretrained_cfg=get_pretrained_cfg("resnet18").to_dict())
    pp = load_config(write_config(tmp_path, f"model: {{timm: resnet18, file: {path.name}}}\n")).preprocess
    assert pp.crop == data["input_size"][-1] == 224
    assert pp.resize == int(224 / data["crop_pct"])  # 0.95: 235, as timm's eval transform
    assert pp.mean == tuple(data["mean"]) and pp.std == tuple(data["std"])
    vit = load_config(write_config(tmp_path, f"model: {{timm: vit_tiny_patch16_224, file: {path.name}}}\n", "v.yaml"))
    assert vit.preprocess.mean == (0.5, 0.5, 0.5)  # its own normalisation, not ImageNet's
    own = load_config(write_config(tmp_path, f"model: {{timm: resnet18, file: {path.name}}}\npreprocess: {{crop: 64, resize: 72}}\n", "o.yaml"))
    assert (own.preprocess.resize, own.preprocess.crop, own.preprocess.mean) == (72, 64, pp.mean)


def test_class_names_from_a_file_or_the_checkpoints_config_json(tmp_path: Path) -> None:
    _, path = _checkpoint(tmp_path, classes=3)
    (tmp_path / "config.json").write_text(json.dumps({"architecture": "resnet18", "label_names": ["a", "b", "c"]}))
    cfg = load_config(write_config(tmp_path, f"model: {{timm: resnet18, file: {path.name}}}\n"))
    assert load_model(cfg.model).categories == ["a", "b", "c"]
    (tmp_path / "names.txt").write_text("x\ny\nz\n")
    named = load_config(write_config(tmp_path, f"model: {{timm: resnet18, file: {path.name}, classes: names.txt}}\n", "n.yaml"))
    assert load_model(named.model).categories == ["x", "y", "z"]
    (tmp_path / "two.txt").write_text("x\ny\n")
    wrong = load_config(write_config(tmp_path, f"model: {{timm: resnet18, file: {path.name}, classes: two.txt}}\n", "w.yaml"))
    with pytest.raises(ModelLoadError, match="2 class names .* 3 classes"):
        load_model(wrong.model)


def test_a_name_without_a_checkpoint_says_where_the_weights_are_and_exits_3(tmp_path: Path) -> None:
    config = write_config(tmp_path, "model: {timm: resnet18}\n")
    with pytest.raises(ModelLoadError) as info:
        load_model(load_config(config).model)
    text = str(info.value)
    assert "never downloads" in text
    assert "https://huggingface.co/timm/resnet18" in text
    assert "model: {timm: resnet18, file: model.safetensors}" in text
    result = lrp("explain", noise_file(tmp_path / "img.png"), "-c", config, "--out", tmp_path / "out")
    assert result.exit_code == 3, result.stderr
    assert "never downloads" in result.stderr


def test_config_errors_name_the_key(tmp_path: Path) -> None:
    _, path = _checkpoint(tmp_path)
    with pytest.raises(ConfigError, match=r"model.timm: unknown timm model 'resnet1' \(did you mean 'resnet18'\?\)"):
        load_config(write_config(tmp_path, f"model: {{timm: resnet1, file: {path.name}}}\n"))
    with pytest.raises(ConfigError, match="model.file: no such file"):
        load_config(write_config(tmp_path, "model: {timm: resnet18, file: missing.pth}\n", "m.yaml"))
    (tmp_path / "w.pth").write_bytes(path.read_bytes())
    with pytest.raises(ModelLoadError, match="(?s)do not match.*check model.timm and model.num_classes"):
        load_model(load_config(write_config(tmp_path, "model: {timm: resnet34, file: w.pth}\n", "a.yaml")).model)


def test_explain_runs_on_a_timm_checkpoint(tmp_path: Path) -> None:
    _, path = _checkpoint(tmp_path, name="efficientnet_lite0", classes=4)
    config = write_config(
        tmp_path, f"model: {{timm: efficientnet_lite0, file: {path.name}}}\npreprocess: {{resize: 64, crop: 64}}\n"
    )
    result = lrp("explain", noise_file(tmp_path / "img.png"), "-c", config, "--out", tmp_path / "out", "-q")
    assert result.exit_code == 0, result.stderr
    data = report(tmp_path / "out")
    assert data["images"][0]["status"] == "ok"
    model = data["run"]["model"]
    assert (model["source"], model["name"], model["num_classes"]) == ("timm", "efficientnet_lite0", 4)
    assert "sha256" in model["weights_source"]
