"""Nothing from a file is executed unless the user said so (issue #6): weights load with
``weights_only=True``, YAML with safe loading, Python model files only with
``--allow-python``, no shell anywhere; wrong weights or class lists are clear errors."""

from __future__ import annotations

import ast
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image
from conftest import lrp, write_tiny_model

import lrpcli

PACKAGE = Path(lrpcli.__file__).resolve().parent




@pytest.fixture()
def picture(tmp_path: Path) -> Path:
    path = tmp_path / "in.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(path)
    return path


class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> Any:
        return (os.system, (f"touch {self.marker}",))


def _calls(tree: ast.AST) -> list[tuple[str, ast.Call]]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            found.append((ast.unparse(node.func), node))
    return found


def test_sources_never_shell_out_or_unpickle() -> None:
    """Scan lrpcli/ (the AST, not the text): no shell or process spawning, every torch.load
    has weights_only=True, yaml is only read with the strict SafeLoader, no eval/exec/pickle."""
    checked = 0
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] + [getattr(node, "module", None) or ""]
                assert "subprocess" not in names, f"{path}: imports subprocess"
        for name, call in _calls(tree):
            where = f"{path.name}:{call.lineno}: {name}"
            assert name not in ("os.system", "os.popen", "eval", "exec", "pickle.load", "pickle.loads"), where
            assert not name.startswith(("os.exec", "os.spawn", "subprocess.")), where
            assert not any(k.arg == "shell" for k in call.keywords), where
            if name == "torch.load":
                flags = {k.arg: k.value for k in call.keywords}
                assert isinstance(flags.get("weights_only"), ast.Constant) and flags["weights_only"].value is True, where
                checked += 1
            if name in ("yaml.load", "yaml.load_all", "yaml.unsafe_load", "yaml.full_load"):
                loader = {k.arg: ast.unparse(k.value) for k in call.keywords}.get("Loader")
                assert loader == "_StrictLoader", where
    assert checked >= 2  # the registry's weights files and the embedded model's


def test_yaml_tags_cannot_run_code(tmp_path: Path, picture: Path) -> None:
    marker = tmp_path / "pwned"
    config = tmp_path / "c.yaml"
    config.write_text(f'model: !!python/object/apply:os.system ["touch {marker}"]\n', encoding="utf-8")
    result = lrp("explain", picture, "-c", config, "-o", tmp_path / "out")
    assert result.exit_code == 2 and "invalid YAML" in result.stderr
    assert not marker.exists()


def test_pickled_weights_of_a_python_model_refused(tmp_path: Path, picture: Path) -> None:
    config = write_tiny_model(tmp_path / "m")
    marker = tmp_path / "pwned"
    torch.save({"state_dict": _Evil(marker)}, tmp_path / "m" / "tiny.pth")
    result = lrp("explain", picture, "-c", config, "-o", tmp_path / "out", "--allow-python", tmp_path / "m" / "model.py")
    assert result.exit_code == 3
    assert "refused: the file holds pickled Python objects" in result.stderr and "weights_only" in result.stderr
    assert not marker.exists()


def test_wrong_architecture_for_the_weights_exit_3(tmp_path: Path, picture: Path) -> None:
    torch.manual_seed(0)
    torch.save(torchvision.models.squeezenet1_1(weights=None, num_classes=3).state_dict(), tmp_path / "w.pth")
    config = tmp_path / "c.yaml"
    config.write_text("model: {file: w.pth, arch: squeezenet1_0, num_classes: 3}\n", encoding="utf-8")
    result = lrp("explain", picture, "-c", config, "-o", tmp_path / "out")
    assert result.exit_code == 3
    assert "the weights do not match the architecture" in result.stderr
    assert "shape mismatches" in result.stderr and "features.0.weight: file (64, 3, 3, 3) vs model (96, 3, 7, 7)" in result.stderr
    assert "check model.arch and model.num_classes" in result.stderr
    assert not (tmp_path / "out").exists()


def test_class_names_file_with_the_wrong_count_exit_2(tmp_path: Path, picture: Path) -> None:
    torch.save(torchvision.models.squeezenet1_1(weights=None, num_classes=3).state_dict(), tmp_path / "w.pth")
    (tmp_path / "names.txt").write_text("cat\ndog\n\n", encoding="utf-8")
    config = tmp_path / "c.yaml"
    config.write_text("model: {file: w.pth, arch: squeezenet1_1, num_classes: 3, classes: names.txt}\n", encoding="utf-8")
    result = lrp("explain", picture, "-c", config, "-o", tmp_path / "out")
    assert result.exit_code == 2
    assert (
        "model.classes: names.txt has 2 class names (one per non-empty line) but the model has 3 classes"
        in result.stderr
    )
