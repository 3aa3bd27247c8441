"""The configs shipped inside the package (``lrpcli/configs/NAME.yaml``), by name.

Imports nothing heavy: the command line's help texts list these names without importing torch.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

__all__ = ["BUILTIN_CONFIGS", "builtin_config_path"]

BUILTIN_CONFIGS: tuple[str, ...] = ("default", "vgg16", "resnet50")
"""Configs shipped inside the package (``lrpcli/configs/NAME.yaml``)."""


def builtin_config_path(name: str) -> Path:
    """Path of a config shipped in the package, e.g. ``default`` or ``vgg16``."""
    return Path(str(resources.files("lrpcli") / "configs" / f"{name}.yaml"))
