"""The YAML run configuration: :mod:`~.schema` (the validated :class:`Config`), :mod:`~.loader`
(strict YAML, built-in configs), :mod:`~.parse` (validation with key paths), :mod:`~.checker`.

A config file has these top-level sections (all optional except ``model``)::

    version: 1
    model:                      # exactly one source
      embedded: efficientnet_lite0
      # torchvision: resnet50        + weights: IMAGENET1K_V1 | DEFAULT | none, num_classes, classes, seed
      # file: weights.pth            + arch: resnet50, num_classes: 10, classes: names.txt
      # python: net.py:ClassName     + weights: net.pth, num_classes, classes, kwargs: {...}
    preprocess: {resize: 256, crop: 224, mean: [...], std: [...]}   # defaults per model
    rules: epsilon_plus_flat    # a preset name, or a selector mapping (see below)
    rule_options: {epsilon: 1.0e-6, gamma: 0.25, stabilizer: 1.0e-6, low: ..., high: ..., ignore_bias: false}
    render: {cmap: bwr, mode: signed, view: full, max_side: 1024, percentile: 99, smooth: 1.5,
             overlay_alpha: 0.8, opacity_exponent: 0.7, contrast: 0.6, legend: false}
    report: {tolerance: 1.0e-5, ledger: compact}   # compact | full | totals
    input: {max_pixels: 89478485}

A ``rules`` mapping is passed to the engine's :func:`lrpcli.get_composite`::

    rules:
      preset: epsilon_plus      # optional base preset
      first: flat               # the first layer
      conv: {rule: gamma, gamma: 0.5}
      features.2*: {rule: epsilon, epsilon: 0.1}
      last: lrp0

Only ``yaml.safe_load``-level constructs are accepted (plus a duplicate-key check). Every
problem is reported as ``FILE: key.path: message``; all problems are collected, not just the
first. Paths in ``model.file``, ``model.python``, ``model.weights`` (of a ``python`` model) and
``model.classes`` are relative to the config file. Validation never imports a ``python`` model's
file; only loading the model does (and the CLI requires ``--allow-python`` for that).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lrpcli.config.builtin import BUILTIN_CONFIGS, builtin_config_path
from lrpcli.lazy import lazy_getattr

if TYPE_CHECKING:
    from lrpcli.config.loader import load_config
    from lrpcli.config.parse import parse_config
    from lrpcli.config.schema import CONFIG_VERSION, Config, ConfigError, ReportSettings

#: names imported on first use (they import torch; the built-in config names above do not)
_LAZY = {
    "load_config": "lrpcli.config.loader",
    "parse_config": "lrpcli.config.parse",
    "CONFIG_VERSION": "lrpcli.config.schema",
    "Config": "lrpcli.config.schema",
    "ConfigError": "lrpcli.config.schema",
    "ReportSettings": "lrpcli.config.schema",
}


__getattr__ = lazy_getattr('lrpcli.config', _LAZY, globals())


__all__ = [
    "BUILTIN_CONFIGS",
    "CONFIG_VERSION",
    "Config",
    "ConfigError",
    "ReportSettings",
    "builtin_config_path",
    "load_config",
    "parse_config",
]
