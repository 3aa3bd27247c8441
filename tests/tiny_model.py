"""A tiny user model for tests and benchmarks: a ``model.py`` with an ``nn.Module``, its weights
(``torch.save(state_dict)``) and a config naming it (``model.python``), written into a folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

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
