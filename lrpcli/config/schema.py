"""The validated configuration: :class:`Config`, its settings, its plain-data form and digest.

The file format (sections, keys, defaults) is documented in :mod:`lrpcli.config` and in
``docs/config.md``; :mod:`lrpcli.config.parse` builds a :class:`Config` from YAML data.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml

from lrpcli.core.composites import Composite, Options
from lrpcli.io.decode import DEFAULT_MAX_PIXELS
from lrpcli.io.preprocess import Preprocess
from lrpcli.io.render import RenderSettings
from lrpcli.models.sources import source_of
from lrpcli.models.spec import ModelSpec
from lrpcli.models.weights import sha256_file

__all__ = [
    "CONFIG_VERSION",
    "DEFAULT_TOLERANCE",
    "Config",
    "COMPACT_STEPS",
    "ConfigError",
    "LEDGER_MODES",
    "ReportSettings",
]

CONFIG_VERSION = 1
"""The config schema version this package reads (``version:`` key, optional)."""

DEFAULT_TOLERANCE = 1e-5
DEFAULT_EPSILON: float = Options.epsilon
DEFAULT_GAMMA: float = Options.gamma
DEFAULT_STABILIZER: float = Options.stabilizer
DEFAULT_BIAS: str = Options.bias
DEFAULT_COVERAGE: bool = Options.coverage


class ConfigError(ValueError):
    """Invalid configuration; ``problems`` is a list of ``(key path, message)``."""

    def __init__(self, source: str, problems: list[tuple[str, str]]) -> None:
        self.source = source
        self.problems = list(problems)
        lines = [f"{source}: {path}: {msg}" if path else f"{source}: {msg}" for path, msg in problems]
        super().__init__("\n".join(lines))


@dataclass(frozen=True)
class ReportSettings:
    """Report options: closure tolerance (relative) and how much of each image's ledger to list
    (:data:`LEDGER_MODES`)."""

    tolerance: float = DEFAULT_TOLERANCE
    ledger: str = "compact"

    @property
    def ledger_steps(self) -> bool | int:
        """What :meth:`lrpcli.core.ledger.Accounts.image` lists: every step, none, or the top few."""
        return {"full": True, "totals": False}.get(self.ledger, COMPACT_STEPS)


LEDGER_MODES: tuple[str, ...] = ("compact", "full", "totals")
"""Per-image ledger in the report: totals plus the steps that absorbed most, every step, totals only."""
COMPACT_STEPS = 5
"""Steps a compact ledger lists."""


@dataclass(frozen=True)
class Config:
    """A validated, fully resolved configuration."""

    source: str
    model: ModelSpec
    preprocess: Preprocess
    rules: str | dict[str, Any]
    epsilon: float | str = DEFAULT_EPSILON
    gamma: float = DEFAULT_GAMMA
    stabilizer: float = DEFAULT_STABILIZER
    bias: str = DEFAULT_BIAS
    coverage: bool = DEFAULT_COVERAGE
    low: tuple[float, float, float] = (0.0, 0.0, 0.0)
    high: tuple[float, float, float] = (1.0, 1.0, 1.0)
    ignore_bias: bool = False
    render: RenderSettings = field(default_factory=RenderSettings)
    report: ReportSettings = field(default_factory=ReportSettings)
    max_pixels: int | None = DEFAULT_MAX_PIXELS
    #: the composite ``rules`` and the rule options make, built (and so checked) by the parser
    composite: Composite | None = field(default=None, compare=False, repr=False)

    @property
    def composite_name(self) -> str:
        if isinstance(self.rules, str):
            return self.rules
        base = self.rules.get("preset")
        return f"{base}+custom" if base else "custom"

    def composite_options(self) -> dict[str, Any]:
        """Keyword options for :class:`lrpcli.Explainer` / :func:`lrpcli.get_composite`."""
        return {
            "epsilon": self.epsilon,
            "gamma": self.gamma,
            "stabilizer": self.stabilizer,
            "bias": self.bias,
            "coverage": self.coverage,
            "low": torch.tensor(self.low, dtype=torch.float32).view(1, 3, 1, 1),
            "high": torch.tensor(self.high, dtype=torch.float32).view(1, 3, 1, 1),
        }

    def to_dict(self) -> dict[str, Any]:
        """The resolved config as plain data; valid config YAML again (paths made absolute)."""
        model = source_of(self.model).to_config(self.model)
        pp = self.preprocess
        preprocess: dict[str, Any] = {
            "resize": pp.resize,
            "crop": pp.crop,
            "mean": [float(v) for v in pp.mean],
            "std": [float(v) for v in pp.std],
        }
        if pp.resize_mode != "shorter":  # only when set: the digests of existing configs stay as they were
            preprocess["resize_mode"] = pp.resize_mode
        return {
            "version": CONFIG_VERSION,
            "model": model,
            "preprocess": preprocess,
            "rules": _plain(self.rules),
            "rule_options": {
                "epsilon": self.epsilon,
                "gamma": self.gamma,
                "stabilizer": self.stabilizer,
                "bias": self.bias,
                "coverage": self.coverage,
                "low": list(self.low),
                "high": list(self.high),
                "ignore_bias": self.ignore_bias,
            },
            "render": asdict(self.render),
            "report": {
                "tolerance": self.report.tolerance,
                "ledger": self.report.ledger,
            },
            "input": {"max_pixels": self.max_pixels},
        }

    def to_yaml(self) -> str:
        """The resolved config as YAML (what ``lrp config check`` prints)."""
        return yaml.safe_dump(
            self.to_dict(), sort_keys=False, allow_unicode=True, default_flow_style=None
        )

    def file_digests(self) -> dict[str, str | None]:
        """SHA-256 of the bytes of the files the model section names (its weights file and a
        ``python:`` model's code); ``None`` for a file that cannot be read."""
        files = {"weights": self.model.path, "python": self.model.code}
        return {key: _file_sha256(path) for key, path in files.items() if path is not None}

    def digest(self) -> str:
        """SHA-256 of the resolved config (canonical JSON) and of the bytes of the files it names
        (:meth:`file_digests`): identical settings and files, identical digest."""
        data = {"config": self.to_dict(), "files": self.file_digests()}
        text = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()


@functools.lru_cache(maxsize=64)
def _cached_sha256(path: str, size: int, mtime_ns: int) -> str:
    return sha256_file(Path(path))


def _file_sha256(path: Path) -> str | None:
    """``sha256_file``, computed once per file version (path, size, modification time)."""
    try:
        info = os.stat(path)
    except OSError:
        return None
    try:
        return _cached_sha256(os.path.realpath(path), info.st_size, info.st_mtime_ns)
    except OSError:
        return None


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
