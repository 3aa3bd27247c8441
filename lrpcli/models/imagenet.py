"""ImageNet-1k class names and the input preprocessing our models expect.

:class:`Preprocess` itself lives in :mod:`lrpcli.io.preprocess` (re-exported here).
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources

from lrpcli.io.preprocess import Preprocess

__all__ = [
    "EFFICIENTNET_LITE_PREPROCESS",
    "IMAGENET_PREPROCESS",
    "Preprocess",
    "imagenet_categories",
]


EFFICIENTNET_LITE_PREPROCESS = Preprocess(
    resize=256,
    crop=224,
    mean=(0.498, 0.498, 0.498),  # 127 / 255
    std=(0.502, 0.502, 0.502),  # 128 / 255
)
"""Preprocessing for EfficientNet-Lite0 (TF-Lite style ``(x - 127) / 128`` on 0..255)."""

IMAGENET_PREPROCESS = Preprocess(
    resize=256,
    crop=224,
    mean=(0.485, 0.456, 0.406),
    std=(0.229, 0.224, 0.225),
)
"""Standard preprocessing for torchvision ImageNet classifiers."""


@lru_cache(maxsize=1)
def _categories() -> tuple[str, ...]:
    # The names torchvision's ImageNet weights carry (``weights.meta["categories"]``), shipped as
    # a text file: importing torchvision just to read them would add almost a second to every run.
    text = resources.files(__package__).joinpath("imagenet_classes.txt").read_text(encoding="utf-8")
    return tuple(text.splitlines())


def imagenet_categories() -> list[str]:
    """The 1000 ImageNet-1k class names in class-index order (a fresh list)."""
    return list(_categories())
