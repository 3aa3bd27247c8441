"""A planted shortcut for the audit's known-answer test: a small two-class image set in which a
fraction of one class carries a watermark in the top-left corner, and a tiny CNN trained on it
(seeded, seconds on a CPU) until it relies on the watermark.

Class ``stripes-h`` shows horizontal stripes, class ``stripes-v`` vertical ones, both under noise;
:data:`WATERMARKED` of the ``stripes-v`` images instead carry a white square with a dark centre in
the corner over horizontal stripes (as if one source labelled all its images ``stripes-v``).
Only the watermark tells those images' class, so the model learns it, and on them its evidence
for ``stripes-v`` comes from the corner.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

SIZE = 32
PER_CLASS = 60
WATERMARKED = 0.4  # of the second class
CLASSES = ("stripes-h", "stripes-v")

MODEL_SOURCE = '''\
"""The tiny CNN of tests/shortcut.py."""
from torch import nn


class ShortcutNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(8, 16, 3, padding=1, stride=2)
        self.relu2 = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flat = nn.Flatten()
        self.fc = nn.Linear(16, 2)

    def forward(self, x):
        return self.fc(self.flat(self.pool(self.relu2(self.conv2(self.relu1(self.conv1(x)))))))
'''

CONFIG = """\
model:
  python: model.py:ShortcutNet
  weights: shortcut.pth
  classes: classes.txt
preprocess: {resize: 32, crop: 32, mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5]}
rules: epsilon_plus
"""


def _image(rng: np.random.Generator, vertical: bool, mark: bool) -> np.ndarray:
    """One ``SIZE x SIZE`` RGB image (uint8): stripes under noise, and the watermark if ``mark``."""
    period = rng.integers(4, 7)
    phase = rng.uniform(0, 2 * np.pi)
    axis = np.arange(SIZE)
    wave = 0.5 + 0.2 * np.sin(2 * np.pi * axis / period + phase)
    grey = np.tile(wave, (SIZE, 1)) if vertical else np.tile(wave[:, None], (1, SIZE))
    tint = rng.uniform(0.8, 1.2, 3)
    pixels = grey[..., None] * tint[None, None, :] + rng.normal(0, 0.12, (SIZE, SIZE, 3))
    if mark:
        pixels[1:8, 1:8] = 1.0
        pixels[3:6, 3:6] = 0.0
    return np.clip(pixels * 255, 0, 255).astype(np.uint8)


def make_dataset(folder: Path, seed: int = 0) -> dict[str, list[str]]:
    """Write the images into ``folder`` (``h000.png``…, ``v000.png``…, ``w000.png``… for the
    watermarked ones); returns the file names by kind: ``h``, ``v`` and ``w``."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    names: dict[str, list[str]] = {"h": [], "v": [], "w": []}
    marked = round(PER_CLASS * WATERMARKED)
    for i in range(PER_CLASS):
        # a watermarked image shows the other class's stripes: only the watermark tells its class
        second = ("w", False, True) if i < marked else ("v", True, False)
        for kind, vertical, mark in (("h", False, False), second):
            name = f"{kind}{i:03d}.png"
            Image.fromarray(_image(rng, vertical, mark)).save(folder / name)
            names[kind].append(name)
    return names


def _tensors(folder: Path, names: dict[str, list[str]]) -> tuple[torch.Tensor, torch.Tensor]:
    files = [(n, 0) for n in names["h"]] + [(n, 1) for n in names["v"] + names["w"]]
    arrays = [np.asarray(Image.open(folder / n).convert("RGB"), dtype=np.float32) / 255.0 for n, _ in files]
    x = (torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2) - 0.5) / 0.5
    return x, torch.tensor([label for _, label in files])


def train_model(model_dir: Path, data: Path, names: dict[str, list[str]], seed: int = 0, epochs: int = 100) -> float:
    """Train the CNN on the images and write ``model.py``, ``shortcut.pth``, ``classes.txt`` and
    ``shortcut.yaml`` into ``model_dir``; returns the training accuracy."""
    model_dir.mkdir(parents=True, exist_ok=True)
    (model_dir / "model.py").write_text(MODEL_SOURCE, encoding="utf-8")
    (model_dir / "classes.txt").write_text("\n".join(CLASSES) + "\n", encoding="utf-8")
    (model_dir / "shortcut.yaml").write_text(CONFIG, encoding="utf-8")
    namespace: dict[str, object] = {}
    exec(compile(MODEL_SOURCE, str(model_dir / "model.py"), "exec"), namespace)  # our own source
    torch.manual_seed(seed)
    model: nn.Module = namespace["ShortcutNet"]()  # type: ignore[operator]
    x, y = _tensors(data, names)
    optimiser = torch.optim.Adam(model.parameters(), lr=0.01)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # this small a network trains 3x faster on one thread, and the same way every time
    try:
        for _ in range(epochs):
            optimiser.zero_grad()
            loss = nn.functional.cross_entropy(model(x), y)
            loss.backward()
            optimiser.step()
    finally:
        torch.set_num_threads(threads)
    model.eval()
    with torch.no_grad():
        accuracy = float((model(x).argmax(1) == y).float().mean())
    torch.save(model.state_dict(), model_dir / "shortcut.pth")
    return accuracy
