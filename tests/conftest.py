"""Shared test helpers: the ``lrp`` command in process, generated images, reports, a tiny user
model written to a folder, and seeded torchvision models with realistic BatchNorm statistics."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image
from typer.testing import CliRunner

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "sample_images"

# The in-process CLI tests would otherwise tune the allocator of the whole pytest process (freed
# memory kept for its lifetime, across hundreds of different models); `lrp` subprocesses inherit
# this too. tests/test_allocator.py checks the tuned setting in processes of its own.
os.environ["LRPCLI_MALLOC"] = "default"


def lrp(*args: str | Path, input: str | bytes | None = None, env: dict[str, str] | None = None) -> Any:
    """Run ``lrp ARGS`` in this process (Typer's runner; stdout and stderr kept apart)."""
    from lrpcli.cli import app  # imported late: LRPCLI_MALLOC is set above for the whole session

    return CliRunner().invoke(app, [str(a) for a in args], input=input, env=env, catch_exceptions=False)


def noise(width: int = 16, height: int = 12, seed: int = 0) -> Image.Image:
    """A ``width`` x ``height`` RGB image of uniform noise (seeded)."""
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def save_image(path: Path, image: Image.Image, **kwargs: Any) -> Path:
    """Save ``image`` to ``path`` (parent folders created); returns ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, **kwargs)
    return path


def noise_file(path: Path, size: tuple[int, int] = (48, 40), seed: int = 0, **save: Any) -> Path:
    """A noise image of ``size`` (width, height) saved to ``path``."""
    return save_image(path, noise(size[0], size[1], seed), **save)


def write_config(folder: Path, text: str, name: str = "config.yaml") -> Path:
    """A config file ``name`` with ``text`` in ``folder``."""
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def tiny_state() -> dict[str, torch.Tensor]:
    """A seeded torchvision ``squeezenet1_1`` state dict with 3 classes."""
    torch.manual_seed(0)
    return torchvision.models.get_model("squeezenet1_1", weights=None, num_classes=3).state_dict()

def make_images(folder: Path, n: int, bad: tuple[int, ...] = ()) -> list[Any]:
    """``n`` noise PNGs ``img00.png``… in ``folder`` (those in ``bad`` are text), as discovered inputs."""
    from lrpcli.io.inputs import discover

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        path = folder / f"img{i:02d}.png"
        if i in bad:
            path.write_text("not an image", encoding="utf-8")
        else:
            Image.fromarray(rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)).save(path)
    return discover([str(folder)])


def report(out: Path) -> dict[str, Any]:
    """``OUT/report.json``, parsed."""
    return json.loads((out / "report.json").read_text(encoding="utf-8"))


def calibrated(name: str, seed: int = 0, size: int = 64, **kwargs: object) -> torch.nn.Module:
    """``torchvision.models.<name>(weights=None)`` with a fixed seed, in eval mode.

    BatchNorm running statistics are set from one batch of random images (cumulative average),
    as training would, so that activations neither vanish nor explode: an untouched freshly
    initialised network (running mean 0, variance 1) can have logits of 1e-9, which would make
    every relative check meaningless.
    """
    torch.manual_seed(seed)
    return calibrate(getattr(torchvision.models, name)(weights=None, **kwargs), seed, size)


def assert_family_explained_and_conserves(model: torch.nn.Module, size: int) -> None:
    """A family's check (torchvision and timm): ``epsilon_plus_flat`` keeps the model's logits,
    gives finite non-zero maps whose ledger closes to 1e-5 and names exactly what the pixels
    miss; bias-free LRP-0 (ε = 0 everywhere) carries f(x) itself to the pixels."""
    from lrpcli import explain

    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        reference = model(x)
    e = explain(model, x, "epsilon_plus_flat")
    torch.testing.assert_close(e.logits, reference, rtol=1e-3, atol=1e-3 * float(reference.abs().max()))
    assert torch.isfinite(e.relevance).all()
    assert float(e.relevance.abs().max()) > 0
    assert float(e.ledger.relative_error().max()) <= 1e-5
    torch.testing.assert_close(e.ledger.pixels + e.ledger.absorbed(), e.ledger.output, rtol=1e-5, atol=0)

    e0 = explain(model, x, {"conv": "lrp0", "linear": "lrp0"}, ignore_bias=True, stabilizer=0.0)
    assert torch.isfinite(e0.relevance).all()
    rel = (e0.ledger.pixels - e0.ledger.output).abs() / e0.ledger.output.abs()
    assert float(rel.max()) <= 1e-5, rel.tolist()
    assert float(e0.ledger.relative_error().max()) <= 1e-5


def calibrate(model: torch.nn.Module, seed: int = 0, size: int = 64) -> torch.nn.Module:
    """Set ``model``'s BatchNorm running statistics from one random batch (see :func:`calibrated`)."""
    bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if bns:
        for bn in bns:
            bn.reset_running_stats()
            bn.momentum = None
        model.train()
        with torch.no_grad():
            model(torch.randn(8, 3, size, size, generator=torch.Generator().manual_seed(seed + 1)))
        for bn in bns:
            bn.momentum = 0.1
    return model.eval()


# --------------------------------------------------------------------------- a tiny user model

MODEL_SOURCE = '''\
"""A tiny CNN written by tests/tiny_model.py."""
from torch import nn


class TinyNet(nn.Module):
    def __init__(self, classes: int = 3, width: int = 4) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, width, 3, padding=1)
        self.relu = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flat = nn.Flatten()
        self.fc = nn.Linear(width, classes)

    def forward(self, x):
        return self.fc(self.flat(self.pool(self.relu(self.conv(x)))))


NOT_A_MODULE = 42
'''

CONFIG = """\
model:
  python: model.py:TinyNet
  weights: tiny.pth
  kwargs: {{classes: 3, width: 4}}
{extra}preprocess: {{resize: {size}, crop: {size}}}
rules: epsilon
"""


def write_tiny_model(folder: Path, *, size: int = 16, extra: str = "", seed: int = 0) -> Path:
    """Write ``model.py``, ``tiny.pth`` and ``tiny.yaml`` into ``folder``; return the config path.

    ``extra`` is inserted into the ``model:`` section (indented lines, e.g. ``"  classes: n.txt\\n"``).
    """
    folder.mkdir(parents=True, exist_ok=True)
    code = folder / "model.py"
    code.write_text(MODEL_SOURCE, encoding="utf-8")
    namespace: dict[str, Any] = {}
    exec(compile(MODEL_SOURCE, str(code), "exec"), namespace)  # our own source; no __pycache__
    torch.manual_seed(seed)
    torch.save(namespace["TinyNet"](classes=3, width=4).state_dict(), folder / "tiny.pth")
    config = folder / "tiny.yaml"
    config.write_text(CONFIG.format(size=size, extra=extra), encoding="utf-8")
    return config
