"""The ``python`` model source (issue #5): a user's nn.Module from a .py file plus weights,
loaded only with ``--allow-python FILE``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from conftest import lrp, write_tiny_model

from lrpcli.config import ConfigError, load_config
from lrpcli.models.sources import load_model
from lrpcli.models.spec import ModelLoadError


@pytest.fixture()
def images(tmp_path: Path) -> Path:
    folder = tmp_path / "imgs"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    return folder


def test_explain_with_allow_python(tmp_path: Path, images: Path) -> None:
    (tmp_path / "m" / "names.txt").parent.mkdir()
    (tmp_path / "m" / "names.txt").write_text("cat\ndog\nfox\n", encoding="utf-8")
    config = write_tiny_model(tmp_path / "m", extra="  classes: names.txt\n")
    out = tmp_path / "out"
    result = lrp("explain", images, "-c", config, "-o", out, "--allow-python", tmp_path / "m" / "model.py")
    assert result.exit_code == 0, result.stderr
    doc = json.loads((out / "report.json").read_text(encoding="utf-8"))
    model = doc["run"]["model"]
    assert model["source"] == "python" and model["name"] == "TinyNet" and model["num_classes"] == 3
    assert "model.py (sha256 " in model["weights_source"] and "tiny.pth (sha256 " in model["weights_source"]
    assert doc["run"]["config"]["resolved"]["model"]["python"] == f"{tmp_path / 'm' / 'model.py'}:TinyNet"
    assert doc["summary"]["ok"] == 3 and doc["summary"]["closure_check"] == "pass"
    for entry in doc["images"]:
        assert entry["target"]["label"] in ("cat", "dog", "fox")
        assert abs(entry["ledger"]["relative_closure_error"]) <= 1e-5
        assert (out / entry["outputs"]["heatmap"]).is_file()
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["model.py", "names.txt", "tiny.pth", "tiny.yaml"]


def test_refused_without_allow_python(tmp_path: Path, images: Path) -> None:
    config = write_tiny_model(tmp_path / "m")
    marker = tmp_path / "ran"
    code = tmp_path / "m" / "model.py"
    code.write_text(f"open({str(marker)!r}, 'w').close()\n" + code.read_text(encoding="utf-8"), encoding="utf-8")
    out = tmp_path / "out"
    result = lrp("explain", images, "-c", config, "-o", out)
    assert result.exit_code == 2
    assert f"add: --allow-python {code}" in result.stderr
    # another file does not count either
    other = tmp_path / "other.py"
    other.write_text("", encoding="utf-8")
    result = lrp("explain", images, "-c", config, "-o", out, "--allow-python", other)
    assert result.exit_code == 2 and "--allow-python" in result.stderr
    assert not marker.exists()  # the user's code never ran
    assert not out.exists()
    # config check validates without running it
    check = lrp("config", "check", config)
    assert check.exit_code == 0, check.stderr
    assert "python:" in check.stdout and not marker.exists()


@pytest.mark.parametrize(
    ("reference", "message"),
    [
        ("model.py:TinyNett", "defines no 'TinyNett' (did you mean 'TinyNet'?)"),
        ("model.py:NOT_A_MODULE", "NOT_A_MODULE is a int, not a torch.nn.Module subclass"),
    ],
)
def test_bad_class_exit_3(tmp_path: Path, images: Path, reference: str, message: str) -> None:
    config = write_tiny_model(tmp_path / "m")
    config.write_text(config.read_text(encoding="utf-8").replace("model.py:TinyNet", reference), encoding="utf-8")
    result = lrp("explain", images, "-c", config, "-o", tmp_path / "out", "--allow-python", tmp_path / "m" / "model.py")
    assert result.exit_code == 3
    assert f"{tmp_path / 'm' / 'model.py'}:{reference.split(':')[1]}" in result.stderr
    assert message in result.stderr
    assert not (tmp_path / "out" / "report.json").exists()


def test_errors_in_the_file_and_weights_exit_3(tmp_path: Path, images: Path) -> None:
    config = write_tiny_model(tmp_path / "m")
    code = tmp_path / "m" / "model.py"
    allow = ("--allow-python", str(code))
    # constructor arguments that do not fit the weights: shape mismatches are listed
    config.write_text(config.read_text(encoding="utf-8").replace("width: 4", "width: 5"), encoding="utf-8")
    result = lrp("explain", images, "-c", config, "-o", tmp_path / "o1", *allow)
    assert result.exit_code == 3
    assert "do not match the architecture" in result.stderr
    assert "conv.weight: file (4, 3, 3, 3) vs model (5, 3, 3, 3)" in result.stderr
    # unknown constructor argument
    config.write_text(config.read_text(encoding="utf-8").replace("width: 5", "depth: 4"), encoding="utf-8")
    result = lrp("explain", images, "-c", config, "-o", tmp_path / "o2", *allow)
    assert result.exit_code == 3 and "cannot construct TinyNet(classes=3, depth=4)" in result.stderr
    # the file itself fails when run
    code.write_text("raise RuntimeError('boom')\n", encoding="utf-8")
    result = lrp("explain", images, "-c", config, "-o", tmp_path / "o3", *allow)
    assert result.exit_code == 3
    assert f"{code}:TinyNet: running model.py failed (RuntimeError: boom)" in result.stderr


def test_class_names_count(tmp_path: Path) -> None:
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "two.txt").write_text("a\nb\n", encoding="utf-8")
    config = write_tiny_model(folder, extra="  classes: two.txt\n  num_classes: 3\n")
    with pytest.raises(ConfigError, match="two.txt has 2 class names .* but the model has 3 classes"):
        load_config(config)
    config = write_tiny_model(folder, extra="  classes: two.txt\n")  # count known only from the model
    with pytest.raises(ModelLoadError, match="2 class names .*:TinyNet returns 3 logits"):
        load_model(load_config(config).model)
    config = write_tiny_model(folder, extra="  num_classes: 5\n")
    with pytest.raises(ModelLoadError, match="returns 3 logits but model.num_classes is 5"):
        load_model(load_config(config).model)




@pytest.mark.parametrize("command", ["evaluate", "tune"])
def test_evaluate_and_tune_refuse_without_allow_python_too(tmp_path: Path, images: Path, command: str) -> None:
    config = write_tiny_model(tmp_path / "m")
    marker = tmp_path / "ran"
    code = tmp_path / "m" / "model.py"
    code.write_text(f"open({str(marker)!r}, 'w').close()\n" + code.read_text(encoding="utf-8"), encoding="utf-8")
    result = lrp(command, images, "-c", config, "-o", tmp_path / "out", "--steps", "2", "--patch", "4")
    assert result.exit_code == 2 and f"add: --allow-python {code}" in result.stderr
    assert not marker.exists()  # the file was never run
    allowed = lrp(command, images, "-c", config, "-o", tmp_path / "ok", "--steps", "2", "--patch", "4",
                  "--allow-python", code, *(["--space", "small"] if command == "tune" else []))  # fmt: skip
    assert allowed.exit_code == 0, allowed.stderr
