"""What a config's ``model:`` section resolves to (:class:`ModelSpec`) and a model ready to explain.

The sources that parse, describe and load specs are in :mod:`lrpcli.models.sources`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

__all__ = ["DEFAULT_MODEL_SEED", "LoadedModel", "ModelLoadError", "ModelSpec"]

DEFAULT_MODEL_SEED = 0
"""``model.seed`` unless the config or ``--seed`` sets it."""


class ModelLoadError(Exception):
    """The model could not be built or its weights could not be loaded."""


@dataclass(frozen=True)
class ModelSpec:
    """A validated ``model:`` section.

    ``source`` is the config key of its source (``"embedded"``, ``"torchvision"``, ``"file"``,
    ``"timm"``, ``"huggingface"`` or ``"python"``; :data:`lrpcli.models.sources.SOURCES`); ``name``
    the embedded model, the architecture (torchvision's or timm's), the transformers folder, or
    the user's class; ``weights`` the torchvision weights
    enum member name (``None``: random initialisation); ``path`` the weights file of a ``file``
    or ``python`` model; ``classes`` the class names read from ``classes_file`` (``None``:
    ImageNet names or weights metadata, else ``class N``). Only for ``python``: ``code`` is the
    ``.py`` file, ``kwargs`` the constructor arguments, ``num_classes`` 0 means "as many as the
    model returns" (found by one forward pass on a zero image of ``input_size`` pixels square).
    ``seed`` seeds the random initialisation every model is built with (the whole network of a
    torchvision model with ``weights: none``; weights loaded afterwards replace it).
    """

    source: str
    name: str
    num_classes: int = 1000
    weights: str | None = None
    path: Path | None = None
    classes_file: Path | None = None
    classes: tuple[str, ...] | None = None
    code: Path | None = None
    kwargs: tuple[tuple[str, Any], ...] = ()
    input_size: int = 224
    seed: int = DEFAULT_MODEL_SEED


@dataclass
class LoadedModel:
    """A model ready for explaining (eval mode, on its device) and what to report about it."""

    module: nn.Module
    spec: ModelSpec
    weights_source: str
    categories: list[str]

    @property
    def num_classes(self) -> int:
        return len(self.categories)
