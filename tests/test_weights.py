"""Tests for lrpcli.models.weights: reading state dicts safely and checking them against a model."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from conftest import write_config
from lrpcli.config import load_config
from lrpcli.models.sources import load_model
from lrpcli.models.spec import ModelLoadError, ModelSpec
from lrpcli.models.weights import load_state_dict_file


def test_pickled_pth_refused(tmp_path: Path) -> None:
    path = tmp_path / "evil.pth"
    torch.save({"model": Payload()}, path)  # weights_only loading must refuse this
    with pytest.raises(ModelLoadError, match="refused: the file holds pickled Python objects") as info:
        load_state_dict_file(path)
    assert "torch.save(model.state_dict()" in str(info.value)
    spec = ModelSpec(source="file", name="squeezenet1_1", num_classes=3, path=path)
    with pytest.raises(ModelLoadError, match="weights_only"):
        load_model(spec)


def test_pth_state_dict_loads(tmp_path: Path, tiny_state: dict[str, torch.Tensor]) -> None:
    path = tmp_path / "w.pth"
    torch.save(tiny_state, path)
    (tmp_path / "names.txt").write_text("a\nb\nc\n", encoding="utf-8")
    cfg = load_config(write_config(tmp_path, "model: {file: w.pth, arch: squeezenet1_1, num_classes: 3, classes: names.txt}\n"))
    loaded = load_model(cfg.model)
    assert loaded.categories == ["a", "b", "c"]
    assert not loaded.module.training
    assert "sha256" in loaded.weights_source
    for key, value in loaded.module.state_dict().items():
        torch.testing.assert_close(value, tiny_state[key])


def test_wrapped_and_prefixed_state_dict(tmp_path: Path, tiny_state: dict[str, torch.Tensor]) -> None:
    path = tmp_path / "ckpt.pt"
    torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in tiny_state.items()}}, path)
    state = load_state_dict_file(path)
    assert set(state) == set(tiny_state)
    loaded = load_model(ModelSpec(source="file", name="squeezenet1_1", num_classes=3, path=path))
    assert loaded.categories == ["class 0", "class 1", "class 2"]


def test_mismatched_state_dict(tmp_path: Path, tiny_state: dict[str, torch.Tensor]) -> None:
    path = tmp_path / "w.pth"
    state = dict(tiny_state)
    state.pop("features.0.weight")
    state["extra.weight"] = torch.zeros(1)
    torch.save(state, path)
    spec = ModelSpec(source="file", name="squeezenet1_1", num_classes=5, path=path)
    with pytest.raises(ModelLoadError) as info:
        load_model(spec)
    text = str(info.value)
    assert "do not match the architecture" in text
    assert "shape mismatches (2): classifier.1.weight: file (3, 512, 1, 1) vs model (5, 512, 1, 1)" in text
    assert "missing in the file (1): features.0.weight" in text
    assert "unexpected in the file (1): extra.weight" in text


def test_not_a_weights_file(tmp_path: Path) -> None:
    path = tmp_path / "w.pth"
    path.write_text("hello", encoding="utf-8")
    with pytest.raises(ModelLoadError, match="not a readable PyTorch weights file"):
        load_state_dict_file(path)
    torch.save([torch.zeros(1)], path)
    with pytest.raises(ModelLoadError, match="expected a state dict"):
        load_state_dict_file(path)


def test_safetensors(tmp_path: Path, tiny_state: dict[str, torch.Tensor]) -> None:
    path = tmp_path / "w.safetensors"
    try:
        from safetensors.torch import save_file
    except ImportError:
        path.write_bytes(b"\0" * 16)
        with pytest.raises(ModelLoadError, match="pip install safetensors"):
            load_state_dict_file(path)
        return
    save_file({k: v.contiguous() for k, v in tiny_state.items()}, str(path))
    assert set(load_state_dict_file(path)) == set(tiny_state)


class Payload:
    """A non-tensor object: pickling it puts a class reference in the file."""

    def __init__(self) -> None:
        self.weights = torch.zeros(2)
