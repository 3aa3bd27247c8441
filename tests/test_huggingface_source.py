"""Tests for lrpcli.models.huggingface_source: transformers image classifiers saved with
``save_pretrained`` in local folders, offline.

Each family (ViT, ConvNeXt, ResNet, Swin) is a tiny randomly initialised ``*ForImageClassification``
model at 32 x 32 pixels with three named classes, saved with its image processor. It must load
through lrpcli's config and loader, give the model's own logits, close its ledger and conserve
under bias-free LRP-0 (the family check of the torchvision and timm families).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from conftest import assert_family_explained_and_conserves, lrp, noise_file, report, write_config

from lrpcli.config import ConfigError, load_config
from lrpcli.io.preprocess import Preprocess
from lrpcli.models import huggingface_source
from lrpcli.models.concrete_trace import trace_with_values
from lrpcli.models.huggingface_source import HuggingFaceClassifier, processor_preprocess
from lrpcli.models.sources import load_model
from lrpcli.models.spec import ModelLoadError

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing may be downloaded
transformers = pytest.importorskip("transformers")

SIZE = 32
LABELS = ["cat", "dog", "bird"]
FAMILIES = ("vit", "convnext", "resnet", "swin")


def _model(family: str) -> torch.nn.Module:
    """A tiny randomly initialised classifier of ``family`` (seeded), in eval mode."""
    labels = {"id2label": dict(enumerate(LABELS)), "label2id": {n: i for i, n in enumerate(LABELS)}}
    torch.manual_seed(0)
    if family == "vit":
        config: Any = transformers.ViTConfig(
            image_size=SIZE, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
            intermediate_size=64, **labels,
        )  # fmt: skip
        return transformers.ViTForImageClassification(config).eval()
    if family == "convnext":
        config = transformers.ConvNextConfig(patch_size=4, hidden_sizes=[16, 32], depths=[1, 1], num_stages=2, **labels)
        return transformers.ConvNextForImageClassification(config).eval()
    if family == "resnet":
        config = transformers.ResNetConfig(embedding_size=16, hidden_sizes=[16, 32], depths=[1, 1], layer_type="basic", **labels)
        return transformers.ResNetForImageClassification(config).eval()
    config = transformers.SwinConfig(
        image_size=SIZE, patch_size=4, embed_dim=16, depths=[2, 2], num_heads=[2, 2], window_size=4, **labels
    )  # shifted windows (with their attention mask) in the first stage
    return transformers.SwinForImageClassification(config).eval()


def _processor(family: str) -> Any:
    """The processor transformers uses for the family (ResNet's hub models use ConvNeXt's)."""
    if family in ("vit", "swin"):
        return transformers.ViTImageProcessor(size={"height": SIZE, "width": SIZE})
    return transformers.ConvNextImageProcessor(size={"shortest_edge": SIZE}, crop_pct=0.875)


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[torch.nn.Module, Path]]:
    """Every family's model and the folder it was saved to with its processor."""
    root = tmp_path_factory.mktemp("hf")
    out = {}
    for family in FAMILIES:
        model = _model(family)
        folder = root / family
        model.save_pretrained(folder)
        _processor(family).save_pretrained(folder)
        out[family] = (model, folder)
    return out


def _config(tmp_path: Path, folder: Path, extra: str = "", name: str = "config.yaml") -> Path:
    return write_config(tmp_path, f"model: {{huggingface: {folder}}}\n{extra}", name)


@pytest.mark.parametrize("family", FAMILIES)
def test_family_loads_gives_its_own_logits_and_conserves(
    family: str, saved: dict[str, tuple[torch.nn.Module, Path]], tmp_path: Path
) -> None:
    model, folder = saved[family]
    cfg = load_config(_config(tmp_path, folder))
    assert (cfg.model.source, cfg.model.name, cfg.model.num_classes) == ("huggingface", str(folder), 3)
    assert cfg.model.path == folder / "model.safetensors" and cfg.model.input_size == SIZE
    loaded = load_model(cfg.model)
    assert isinstance(loaded.module, HuggingFaceClassifier)
    assert loaded.categories == LABELS and loaded.spec.num_classes == 3  # config.json's id2label
    digest = huggingface_source.sha256_file(folder / "model.safetensors")
    assert f"sha256 {digest}" in loaded.weights_source and type(model).__name__ in loaded.weights_source
    assert any(name.startswith(family) for name, _ in loaded.module.named_modules())  # transformers' names
    x = torch.randn(3, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(7))  # traced with batch 2
    with torch.no_grad():
        torch.testing.assert_close(loaded.module(x), model(pixel_values=x).logits, rtol=0, atol=1e-5)
    assert_family_explained_and_conserves(loaded.module, SIZE)


def test_attention_is_frozen_and_the_graph_survives_copies(saved: dict[str, tuple[torch.nn.Module, Path]], tmp_path: Path) -> None:
    import copy
    import pickle

    from lrpcli import prepare

    loaded = load_model(load_config(_config(tmp_path, saved["vit"][1])).model)
    program = prepare(loaded.module)
    assert [s.frozen.name for s in program.steps if s.kind == "frozen"].count("attention") == 2  # sdpa, two layers
    x = torch.randn(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        reference = loaded.module(x)
        twin = copy.deepcopy(loaded.module).to(torch.float64)  # the engine's float64 redo
        torch.testing.assert_close(twin(x.double()).float(), reference, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(pickle.loads(pickle.dumps(loaded.module))(x), reference)  # the Ray backend


def test_preprocessing_is_read_from_the_saved_processor(saved: dict[str, tuple[torch.nn.Module, Path]], tmp_path: Path) -> None:
    vit = load_config(_config(tmp_path, saved["vit"][1])).preprocess
    assert vit == Preprocess(SIZE, SIZE, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), resize_mode="squash")  # ViT: squash, no crop
    convnext = load_config(_config(tmp_path, saved["resnet"][1], name="r.yaml")).preprocess
    assert convnext == Preprocess(int(SIZE / 0.875), SIZE, (0.5,) * 3, (0.5,) * 3)  # shorter side / crop_pct, crop
    own = load_config(_config(tmp_path, saved["vit"][1], "preprocess: {resize: 40, mean: 0.25}\n", "o.yaml")).preprocess
    assert (own.resize, own.crop, own.mean, own.resize_mode) == (40, SIZE, (0.25,) * 3, "squash")  # key by key
    shorter = load_config(_config(tmp_path, saved["vit"][1], "preprocess: {resize_mode: shorter}\n", "s.yaml"))
    assert shorter.preprocess.resize_mode == "shorter"
    with pytest.raises(ConfigError, match=r"preprocess.resize_mode: unknown resize mode 'squish' \(did you mean 'squash'\?\)"):
        load_config(_config(tmp_path, saved["vit"][1], "preprocess: {resize_mode: squish}\n", "e.yaml"))


def test_the_resolved_config_round_trips(saved: dict[str, tuple[torch.nn.Module, Path]], tmp_path: Path) -> None:
    cfg = load_config(_config(tmp_path, saved["swin"][1]))
    data = cfg.to_dict()
    assert data["model"] == {"huggingface": str(saved["swin"][1])}
    assert data["preprocess"]["resize_mode"] == "squash"
    (tmp_path / "elsewhere").mkdir()  # the resolved paths are absolute
    again = load_config(write_config(tmp_path / "elsewhere", yaml.safe_dump(data), "again.yaml"))
    assert (again.model, again.preprocess, again.digest()) == (cfg.model, cfg.preprocess, cfg.digest())
    assert cfg.file_digests()["weights"] == huggingface_source.sha256_file(saved["swin"][1] / "model.safetensors")
    plain = load_config(write_config(tmp_path, "model: {embedded: efficientnet_lite0}\n", "p.yaml")).to_dict()
    assert "resize_mode" not in plain["preprocess"]  # unchanged for every other model (and its digest)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"size": {"shortest_edge": 384}, "crop_pct": 0.875, "image_processor_type": "ConvNextImageProcessor"},
         (384, 384, "squash")),  # ConvNeXt at 384 or more: warped, not cropped
        ({"size": 224, "crop_pct": 0.875, "feature_extractor_type": "ConvNextFeatureExtractor"}, (256, 224, "shorter")),
        ({"size": 224, "image_processor_type": "ViTImageProcessor"}, (224, 224, "squash")),  # old plain-number size
        ({"size": {"height": 256, "width": 256}, "do_center_crop": True, "crop_size": {"height": 224, "width": 224},
          "image_processor_type": "DeiTImageProcessor"}, (256, 224, "squash")),
        ({"size": {"shortest_edge": 256}, "do_center_crop": True, "crop_size": 224,
          "image_processor_type": "BitImageProcessor"}, (256, 224, "shorter")),
        ({"do_resize": False, "image_processor_type": "ViTImageProcessor"}, (48, 48, "shorter")),  # config.json's size
    ],
)  # fmt: skip
def test_processor_sizes(data: dict[str, Any], expected: tuple[int, int, str]) -> None:
    pp = processor_preprocess(data, image_size=48)
    assert (pp.resize, pp.crop, pp.resize_mode) == expected


def test_processor_normalisation_folds_the_rescale_factor() -> None:
    pp = processor_preprocess({"size": {"height": 8, "width": 8}, "image_mean": [127.5] * 3, "image_std": [127.5] * 3,
                               "do_rescale": False})  # fmt: skip
    assert pp.mean == pytest.approx((0.5,) * 3) and pp.std == pytest.approx((0.5,) * 3)
    raw = processor_preprocess({"size": {"height": 8, "width": 8}, "do_normalize": False})
    assert raw.mean == (0.0, 0.0, 0.0) and raw.std == (1.0, 1.0, 1.0)
    with pytest.raises(ValueError, match="224x320 pixels .* square"):
        processor_preprocess({"size": {"height": 224, "width": 320}})


def test_class_names_and_a_bad_processor_file(saved: dict[str, tuple[torch.nn.Module, Path]], tmp_path: Path) -> None:
    folder = saved["convnext"][1]
    (tmp_path / "names.txt").write_text("x\ny\nz\n")
    named = load_config(write_config(tmp_path, f"model: {{huggingface: {folder}, classes: names.txt}}\n", "n.yaml"))
    assert load_model(named.model).categories == ["x", "y", "z"]
    (tmp_path / "two.txt").write_text("x\ny\n")
    with pytest.raises(ConfigError, match="model.classes: two.txt has 2 class names .* the model has 3 classes"):
        load_config(write_config(tmp_path, f"model: {{huggingface: {folder}, classes: two.txt}}\n", "w.yaml"))
    broken = tmp_path / "broken"
    broken.mkdir()
    for name in ("config.json", "model.safetensors"):
        (broken / name).write_bytes((folder / name).read_bytes())
    config = json.loads((broken / "config.json").read_text())
    config["id2label"] = {str(i): f"LABEL_{i}" for i in range(3)}  # transformers' placeholders
    (broken / "config.json").write_text(json.dumps(config))
    loaded = load_model(load_config(_config(tmp_path, broken, name="b.yaml")).model)
    assert loaded.categories == ["class 0", "class 1", "class 2"]
    assert load_config(_config(tmp_path, broken, name="b.yaml")).preprocess.crop == 224  # no processor: ImageNet's
    (broken / "preprocessor_config.json").write_text("{not json")
    with pytest.raises(ConfigError, match="model.huggingface: .*preprocessor_config.json: not a readable JSON file"):
        load_config(_config(tmp_path, broken, name="b.yaml"))


def test_a_hub_id_is_refused_with_how_to_save_it_and_exits_3(tmp_path: Path) -> None:
    config = write_config(tmp_path, "model: {huggingface: google/vit-base-patch16-224}\n")
    cfg = load_config(config)
    with pytest.raises(ModelLoadError) as info:
        load_model(cfg.model)
    text = str(info.value)
    assert "no such folder" in text and "never downloads" in text
    assert "save_pretrained('vit-base-patch16-224')" in text
    assert "huggingface-cli download google/vit-base-patch16-224 --local-dir vit-base-patch16-224" in text
    assert "model: {huggingface: vit-base-patch16-224}" in text
    result = lrp("explain", noise_file(tmp_path / "img.png"), "-c", config, "--out", tmp_path / "out")
    assert result.exit_code == 3, result.stderr
    assert "never downloads" in result.stderr


def test_folder_problems_say_what_to_do(saved: dict[str, tuple[torch.nn.Module, Path]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ModelLoadError, match="no config.json .*save_pretrained"):
        load_model(load_config(_config(tmp_path, empty)).model)
    partial = tmp_path / "partial"
    partial.mkdir()
    (partial / "config.json").write_bytes((saved["vit"][1] / "config.json").read_bytes())
    from safetensors.torch import load_file, save_file

    state = load_file(str(saved["vit"][1] / "model.safetensors"))
    save_file({k: v for k, v in state.items() if not k.startswith("classifier.")}, str(partial / "model.safetensors"))
    with pytest.raises(ModelLoadError, match="(?s)do not match.*missing keys \\(2\\): classifier.bias, classifier.weight"):
        load_model(load_config(_config(tmp_path, partial, name="p.yaml")).model)
    monkeypatch.setattr(huggingface_source, "_has_transformers", lambda: False)
    with pytest.raises(ConfigError, match=r"model.huggingface: .*pip install 'lrpcli\[huggingface\]'"):
        load_config(_config(tmp_path, saved["vit"][1], name="t.yaml"))


def test_control_flow_on_tensor_data_is_refused() -> None:
    class DataDependent(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x if x.sum() > 0 else -x

    with pytest.raises(torch.fx.proxy.TraceError, match="depends on the data"):
        trace_with_values(DataDependent(), torch.ones(1, 3, 4, 4))


def test_explain_runs_on_a_saved_folder(saved: dict[str, tuple[torch.nn.Module, Path]], tmp_path: Path) -> None:
    config = _config(tmp_path, saved["swin"][1])
    image = noise_file(tmp_path / "img.png", size=(48, 40))
    result = lrp("explain", image, "-c", config, "--out", tmp_path / "out", "-q")
    assert result.exit_code == 0, result.stderr
    data = report(tmp_path / "out")
    entry = data["images"][0]
    assert entry["status"] == "ok"
    assert (tmp_path / "out" / entry["outputs"]["heatmap"]).is_file()
    assert entry["render"]["crop_box"] == [0.0, 0.0, 48.0, 40.0]  # squashed: the whole photo
    model = data["run"]["model"]
    assert (model["source"], model["num_classes"]) == ("huggingface", 3)
    assert "SwinForImageClassification" in model["weights_source"] and "sha256" in model["weights_source"]
    assert data["run"]["preprocess"]["resize_mode"] == "squash"
