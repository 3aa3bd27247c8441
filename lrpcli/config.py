"""The YAML run configuration: loading, validation with key paths, resolution.

A config file has these top-level sections (all optional except ``model``)::

    version: 1
    model:                      # exactly one source
      embedded: efficientnet_lite0
      # torchvision: resnet50        + weights: IMAGENET1K_V1 | DEFAULT | none, num_classes, classes
      # file: weights.pth            + arch: resnet50, num_classes: 10, classes: names.txt
      # python: net.py:ClassName     + weights: net.pth, num_classes, classes, kwargs: {...}
    preprocess: {resize: 256, crop: 224, mean: [...], std: [...]}   # defaults per model
    rules: epsilon_plus_flat    # a preset name, or a selector mapping (see below)
    rule_options: {epsilon: 1.0e-6, gamma: 0.25, stabilizer: 1.0e-6, low: ..., high: ..., ignore_bias: false}
    render: {cmap: bwr, percentile: null, overlay_alpha: 0.8}
    report: {tolerance: 1.0e-5, ledger_steps: true}
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

import difflib
import hashlib
import inspect
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any

import torch
import yaml

from lrpcli.composites import PRESETS, get_composite
from lrpcli.images import DEFAULT_MAX_PIXELS, Preprocess
from lrpcli.models.registry import (
    EMBEDDED_MODELS,
    WEIGHT_FILE_SUFFIXES,
    ModelSpec,
    architectures,
    default_preprocess,
    torchvision_classifiers,
    torchvision_weights,
    weight_names,
)
from lrpcli.models.python_source import parse_reference
from lrpcli.rules import AFFINE_RULES

__all__ = [
    "BUILTIN_CONFIGS",
    "CONFIG_VERSION",
    "Config",
    "ConfigError",
    "RenderSettings",
    "ReportSettings",
    "builtin_config_path",
    "load_config",
    "parse_config",
]

CONFIG_VERSION = 1
"""The config schema version this module reads (``version:`` key, optional)."""

BUILTIN_CONFIGS: tuple[str, ...] = ("default", "vgg16", "resnet50")
"""Configs shipped inside the package (``lrpcli/configs/NAME.yaml``)."""

DEFAULT_TOLERANCE = 1e-5
DEFAULT_EPSILON = 1e-6
DEFAULT_GAMMA = 0.25
DEFAULT_STABILIZER = 1e-6

_TOP_KEYS = ("version", "model", "preprocess", "rules", "rule_options", "render", "report", "input")
_MODEL_KEYS = {
    "embedded": ("embedded",),
    "torchvision": ("torchvision", "weights", "num_classes", "classes"),
    "file": ("file", "arch", "num_classes", "classes"),
    "python": ("python", "weights", "num_classes", "classes", "kwargs"),
}
_PREPROCESS_KEYS = ("resize", "crop", "mean", "std")
_OPTION_KEYS = ("epsilon", "gamma", "stabilizer", "low", "high", "ignore_bias")
_RENDER_KEYS = ("cmap", "percentile", "overlay_alpha")
_REPORT_KEYS = ("tolerance", "ledger_steps")
_INPUT_KEYS = ("max_pixels",)
_BOUND_PARAMS = ("low", "high")


class ConfigError(ValueError):
    """Invalid configuration; ``problems`` is a list of ``(key path, message)``."""

    def __init__(self, source: str, problems: list[tuple[str, str]]) -> None:
        self.source = source
        self.problems = list(problems)
        lines = [f"{source}: {path}: {msg}" if path else f"{source}: {msg}" for path, msg in problems]
        super().__init__("\n".join(lines))


@dataclass(frozen=True)
class RenderSettings:
    """How heatmaps are drawn: colour map, optional percentile scale, overlay opacity."""

    cmap: str = "bwr"
    percentile: float | None = None
    overlay_alpha: float = 0.8


@dataclass(frozen=True)
class ReportSettings:
    """Report options: closure tolerance (relative) and whether to list every ledger step."""

    tolerance: float = DEFAULT_TOLERANCE
    ledger_steps: bool = True


@dataclass(frozen=True)
class Config:
    """A validated, fully resolved configuration."""

    source: str
    model: ModelSpec
    preprocess: Preprocess
    rules: str | dict[str, Any]
    epsilon: float = DEFAULT_EPSILON
    gamma: float = DEFAULT_GAMMA
    stabilizer: float = DEFAULT_STABILIZER
    low: tuple[float, float, float] = (0.0, 0.0, 0.0)
    high: tuple[float, float, float] = (1.0, 1.0, 1.0)
    ignore_bias: bool = False
    render: RenderSettings = field(default_factory=RenderSettings)
    report: ReportSettings = field(default_factory=ReportSettings)
    max_pixels: int | None = DEFAULT_MAX_PIXELS

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
            "low": torch.tensor(self.low, dtype=torch.float32).view(1, 3, 1, 1),
            "high": torch.tensor(self.high, dtype=torch.float32).view(1, 3, 1, 1),
        }

    def to_dict(self) -> dict[str, Any]:
        """The resolved config as plain data; valid config YAML again (paths made absolute)."""
        m = self.model
        model: dict[str, Any]
        if m.source == "embedded":
            model = {"embedded": m.name}
        elif m.source == "torchvision":
            model = {"torchvision": m.name, "weights": m.weights or "none", "num_classes": m.num_classes}
        elif m.source == "python":
            model = {"python": f"{m.code}:{m.name}", "weights": str(m.path)}
            if m.num_classes:
                model["num_classes"] = m.num_classes
            if m.kwargs:
                model["kwargs"] = dict(m.kwargs)
        else:
            model = {"file": str(m.path), "arch": m.name, "num_classes": m.num_classes}
        if m.classes_file is not None:
            model["classes"] = str(m.classes_file)
        pp = self.preprocess
        return {
            "version": CONFIG_VERSION,
            "model": model,
            "preprocess": {
                "resize": pp.resize,
                "crop": pp.crop,
                "mean": [float(v) for v in pp.mean],
                "std": [float(v) for v in pp.std],
            },
            "rules": _plain(self.rules),
            "rule_options": {
                "epsilon": self.epsilon,
                "gamma": self.gamma,
                "stabilizer": self.stabilizer,
                "low": list(self.low),
                "high": list(self.high),
                "ignore_bias": self.ignore_bias,
            },
            "render": {
                "cmap": self.render.cmap,
                "percentile": self.render.percentile,
                "overlay_alpha": self.render.overlay_alpha,
            },
            "report": {
                "tolerance": self.report.tolerance,
                "ledger_steps": self.report.ledger_steps,
            },
            "input": {"max_pixels": self.max_pixels},
        }

    def to_yaml(self) -> str:
        return yaml.safe_dump(
            self.to_dict(), sort_keys=False, allow_unicode=True, default_flow_style=None
        )

    def digest(self) -> str:
        """SHA-256 of the resolved config (canonical JSON): identical settings, identical digest."""
        text = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"), ensure_ascii=True)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


# --------------------------------------------------------------------------- YAML loading


class _StrictLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses duplicate mapping keys."""


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> Any:
    loader.flatten_mapping(node)
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        try:
            duplicate = key in seen
            seen.add(key)
        except TypeError:
            raise yaml.constructor.ConstructorError(
                None, None, f"unhashable mapping key {key!r}", key_node.start_mark
            ) from None
        if duplicate:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
    return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def builtin_config_path(name: str) -> Path:
    """Path of a config shipped in the package, e.g. ``default`` or ``vgg16``."""
    return Path(str(resources.files("lrpcli") / "configs" / f"{name}.yaml"))


def _read_yaml(text: str, source: str) -> Any:
    try:
        return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(source, [(where, f"invalid YAML: {problem}")]) from None


def load_config(
    path: str | Path | None = None, *, overrides: Mapping[str, Any] | None = None
) -> Config:
    """Read, validate and resolve a config file (``None``: the built-in default).

    ``path`` may also be the name of a built-in config (``default``, ``vgg16``, ``resnet50``)
    when no such file exists. ``overrides`` maps dotted key paths (``rules``, ``render.cmap``,
    ``input.max_pixels``) to values applied on top of the file before validation.
    Raises :class:`ConfigError`.
    """
    if path is None:
        file = builtin_config_path("default")
        source = "default.yaml (built in)"
    else:
        file = Path(path)
        source = str(path)
        if not file.exists() and str(path) in BUILTIN_CONFIGS:
            file = builtin_config_path(str(path))
            source = f"{path}.yaml (built in)"
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        choices = ", ".join(BUILTIN_CONFIGS)
        raise ConfigError(
            source, [("", f"no such config file (built-in configs: {choices})")]
        ) from None
    except IsADirectoryError:
        raise ConfigError(source, [("", "is a folder, not a config file")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(source, [("", f"cannot read the config file ({exc})")]) from None
    data = _read_yaml(text, source)
    if overrides:
        data = dict(data) if isinstance(data, Mapping) else data
        if isinstance(data, dict):
            for dotted, value in overrides.items():
                _set_path(data, dotted, value)
    return parse_config(data, source=source, base_dir=file.resolve().parent)


def _set_path(data: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = data
    for part in parts[:-1]:
        child = node.get(part)
        child = dict(child) if isinstance(child, Mapping) else {}
        node[part] = child
        node = child
    node[parts[-1]] = value


# --------------------------------------------------------------------------- validation


class _Checker:
    """Collects ``(path, message)`` problems while converting values."""

    def __init__(self) -> None:
        self.problems: list[tuple[str, str]] = []

    def error(self, path: str, message: str) -> None:
        self.problems.append((path, message))

    def mapping(self, value: Any, path: str, allowed: tuple[str, ...]) -> dict[str, Any] | None:
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            self.error(path, f"expected a mapping with keys {', '.join(allowed)}, got {_show(value)}")
            return None
        out: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str) or key not in allowed:
                hint = _suggest(str(key), allowed)
                self.error(
                    _join(path, str(key)),
                    f"unknown key{hint}; allowed keys here: {', '.join(allowed)}",
                )
                continue
            out[key] = item
        return out

    def number(
        self,
        value: Any,
        path: str,
        *,
        minimum: float | None = None,
        maximum: float | None = None,
        exclusive_min: bool = False,
    ) -> float | None:
        number: float | None = None
        if isinstance(value, bool):
            number = None
        elif isinstance(value, (int, float)):
            number = float(value)
        elif isinstance(value, str):
            try:  # PyYAML reads "1e-6" (no dot) as a string
                number = float(value.strip())
            except ValueError:
                number = None
        if number is None or not math.isfinite(number):
            self.error(path, f"expected a number, got {_show(value)}")
            return None
        if minimum is not None and (number < minimum or (exclusive_min and number == minimum)):
            relation = ">" if exclusive_min else ">="
            self.error(path, f"must be {relation} {minimum:g}, got {number:g}")
            return None
        if maximum is not None and number > maximum:
            self.error(path, f"must be <= {maximum:g}, got {number:g}")
            return None
        return number

    def integer(self, value: Any, path: str, *, minimum: int = 1) -> int | None:
        number: int | None = None
        if isinstance(value, bool):
            number = None
        elif isinstance(value, int):
            number = value
        elif isinstance(value, float) and value.is_integer():
            number = int(value)
        elif isinstance(value, str) and value.strip().isdigit():
            number = int(value.strip())
        if number is None:
            self.error(path, f"expected a whole number, got {_show(value)}")
            return None
        if number < minimum:
            self.error(path, f"must be >= {minimum}, got {number}")
            return None
        return number

    def boolean(self, value: Any, path: str) -> bool | None:
        if isinstance(value, bool):
            return value
        self.error(path, f"expected true or false, got {_show(value)}")
        return None

    def string(self, value: Any, path: str) -> str | None:
        if isinstance(value, str) and value.strip():
            return value.strip()
        self.error(path, f"expected a name (text), got {_show(value)}")
        return None

    def triple(self, value: Any, path: str, *, nonzero: bool = False) -> tuple[float, float, float] | None:
        """A number (used for all three channels) or a list of three numbers."""
        if isinstance(value, (list, tuple)):
            if len(value) != 3:
                self.error(path, f"expected 3 values (R, G, B) or one number, got {len(value)} values")
                return None
            items = [self.number(v, f"{path}[{i}]") for i, v in enumerate(value)]
        else:
            items = [self.number(value, path)] * 3
        if any(v is None for v in items):
            return None
        result = (float(items[0]), float(items[1]), float(items[2]))  # type: ignore[arg-type]
        if nonzero and any(v == 0 for v in result):
            self.error(path, f"values must be non-zero, got {list(result)}")
            return None
        return result


def _show(value: Any) -> str:
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "nothing (null)"
    return repr(value)


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _suggest(word: str, choices: Any) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def parse_config(data: Any, *, source: str = "config", base_dir: Path | None = None) -> Config:
    """Validate already-parsed YAML data; raise :class:`ConfigError` listing every problem."""
    base_dir = base_dir or Path.cwd()
    c = _Checker()
    if data is None:
        raise ConfigError(source, [("", "the config is empty; it needs at least a 'model' section")])
    top = c.mapping(data, "", _TOP_KEYS)
    if top is None:
        raise ConfigError(source, c.problems)

    if "version" in top:
        version = c.integer(top["version"], "version")
        if version is not None and version != CONFIG_VERSION:
            c.error("version", f"this lrpcli reads config version {CONFIG_VERSION}, got {version}")

    if "model" not in top:
        c.error("model", "missing; e.g. 'model: {embedded: efficientnet_lite0}'")
        model = None
    else:
        model = _parse_model(c, top["model"], base_dir)

    default_pp = _safe_default_preprocess(model)
    pp = _parse_preprocess(c, top.get("preprocess"), default_pp)
    if model is not None and model.source == "python" and pp is not None:
        model = replace(model, input_size=pp.crop)  # for counting the model's outputs
    rules = _parse_rules(c, top.get("rules", "epsilon_plus_flat"))
    opts = _parse_options(c, top.get("rule_options"), pp)
    render = _parse_render(c, top.get("render"))
    report = _parse_report(c, top.get("report"))
    max_pixels = _parse_input(c, top.get("input"))

    if not c.problems and rules is not None and opts is not None:
        try:  # the engine's own check of the whole composite
            get_composite(rules, **{k: v for k, v in opts.items() if k != "ignore_bias"})
        except (ValueError, TypeError) as exc:
            c.error("rules", str(exc))
    if c.problems:
        raise ConfigError(source, c.problems)
    assert model is not None and pp is not None and rules is not None and opts is not None
    assert render is not None and report is not None
    return Config(
        source=source,
        model=model,
        preprocess=pp,
        rules=rules,
        epsilon=opts["epsilon"],
        gamma=opts["gamma"],
        stabilizer=opts["stabilizer"],
        low=opts["low"],
        high=opts["high"],
        ignore_bias=opts["ignore_bias"],
        render=render,
        report=report,
        max_pixels=max_pixels,
    )


def _safe_default_preprocess(model: ModelSpec | None) -> Preprocess:
    from lrpcli.models.imagenet import IMAGENET_PREPROCESS

    if model is None:
        return IMAGENET_PREPROCESS
    try:
        return default_preprocess(model)
    except Exception:  # noqa: BLE001 - only a default; the model section was checked already
        return IMAGENET_PREPROCESS


def _parse_model(c: _Checker, value: Any, base_dir: Path) -> ModelSpec | None:
    if isinstance(value, str):
        c.error(
            "model",
            f"expected a mapping such as 'model: {{embedded: {value}}}' or "
            f"'model: {{torchvision: {value}, weights: DEFAULT}}', got {value!r}",
        )
        return None
    if not isinstance(value, Mapping):
        c.error("model", f"expected a mapping naming the model source, got {_show(value)}")
        return None
    sources = [s for s in _MODEL_KEYS if s in value]
    if len(sources) != 1:
        what = "several sources: " + ", ".join(sources) if sources else "no source"
        c.error(
            "model",
            f"{what}; give exactly one of 'embedded: efficientnet_lite0', "
            "'torchvision: NAME', 'file: PATH' or 'python: FILE.py:ClassName'",
        )
        return None
    source = sources[0]
    fields = c.mapping(value, "model", _MODEL_KEYS[source])
    if fields is None:
        return None
    before = len(c.problems)
    if source == "embedded":
        name = c.string(fields["embedded"], "model.embedded")
        if name is not None and name not in EMBEDDED_MODELS:
            c.error(
                "model.embedded",
                f"unknown embedded model {name!r}{_suggest(name, EMBEDDED_MODELS)}; "
                f"choose one of: {', '.join(EMBEDDED_MODELS)}",
            )
        if len(c.problems) > before or name is None:
            return None
        return ModelSpec(source="embedded", name=name)
    if source == "torchvision":
        return _parse_torchvision(c, fields, base_dir)
    if source == "python":
        return _parse_python_model(c, fields, base_dir)
    return _parse_file_model(c, fields, base_dir)


def _parse_python_model(c: _Checker, fields: dict[str, Any], base_dir: Path) -> ModelSpec | None:
    """``python: FILE.py:ClassName`` + ``weights`` (+ ``num_classes``, ``classes``, ``kwargs``)."""
    before = len(c.problems)
    code: Path | None = None
    class_name: str | None = None
    raw = c.string(fields["python"], "model.python")
    if raw is not None:
        ref = parse_reference(raw)
        if ref is None:
            c.error("model.python", f"{raw!r}: expected FILE.py:ClassName, e.g. 'python: net.py:MyNet'")
        else:
            code = (base_dir / Path(ref[0]).expanduser()).resolve()
            class_name = ref[1]
            if code.suffix != ".py":
                c.error("model.python", f"{ref[0]!r}: expected a .py file")
            elif not code.is_file():
                c.error("model.python", f"no such file: {code}")
    weights: Path | None = None
    if "weights" not in fields:
        c.error("model.weights", f"missing; the model's weights file ({' or '.join(WEIGHT_FILE_SUFFIXES)})")
    else:
        weights = _weights_file(c, fields["weights"], "model.weights", base_dir)
    num_classes: int | None = None
    if fields.get("num_classes") is not None:
        num_classes = c.integer(fields["num_classes"], "model.num_classes")
    kwargs = _parse_kwargs(c, fields.get("kwargs"))
    classes_file, classes = _parse_classes(c, fields, base_dir, num_classes)
    if len(c.problems) > before or code is None or class_name is None or weights is None or kwargs is None:
        return None
    return ModelSpec(
        source="python",
        name=class_name,
        num_classes=num_classes or 0,
        path=weights,
        classes_file=classes_file,
        classes=classes,
        code=code,
        kwargs=kwargs,
    )


def _parse_kwargs(c: _Checker, value: Any) -> tuple[tuple[str, Any], ...] | None:
    """Constructor keyword arguments: names to plain scalars (text, numbers, booleans, null)."""
    if value is None:
        return ()
    if not isinstance(value, Mapping):
        c.error("model.kwargs", f"expected a mapping of argument names to values, got {_show(value)}")
        return None
    out: list[tuple[str, Any]] = []
    ok = True
    for key, item in value.items():
        where = f"model.kwargs.{key}"
        if not isinstance(key, str) or not key.isidentifier():
            c.error(where, "argument names must be Python identifiers")
            ok = False
        elif item is not None and not isinstance(item, (str, int, float, bool)):
            c.error(where, f"expected a plain value (text, number, true/false, null), got {_show(item)}")
            ok = False
        else:
            out.append((key, item))
    return tuple(out) if ok else None


def _parse_torchvision(c: _Checker, fields: dict[str, Any], base_dir: Path) -> ModelSpec | None:
    before = len(c.problems)
    name = c.string(fields["torchvision"], "model.torchvision")
    if name is None:
        return None
    known = torchvision_classifiers()
    if name not in known:
        c.error(
            "model.torchvision",
            f"unknown torchvision classifier {name!r}{_suggest(name, known)}; "
            "run 'lrp models' to list them",
        )
        return None
    raw_weights = fields.get("weights", "DEFAULT")
    weights: str | None
    meta: list[str] | None = None
    if raw_weights is None or (isinstance(raw_weights, str) and raw_weights.strip().lower() == "none"):
        weights = None
    else:
        wname = c.string(raw_weights, "model.weights")
        if wname is None:
            return None
        try:
            member = torchvision_weights(name, wname)
        except KeyError:
            choices = weight_names(name)
            c.error(
                "model.weights",
                f"{name} has no weights {wname!r}{_suggest(wname, choices)}; "
                f"choose one of: {', '.join(choices)}, or none",
            )
            return None
        weights = member.name
        meta = member.meta.get("categories")
        if not meta:
            c.error(
                "model.weights",
                f"{name} weights {weights} have no class list (not a classifier); "
                f"choose another of: {', '.join(weight_names(name))}",
            )
            return None
    num_classes: int | None
    if "num_classes" in fields:
        num_classes = c.integer(fields["num_classes"], "model.num_classes")
        if num_classes is not None and meta is not None and num_classes != len(meta):
            c.error(
                "model.num_classes",
                f"{num_classes} does not match the {len(meta)} classes of weights {weights}; "
                "drop num_classes, or use 'weights: none' (or a local file) for another class count",
            )
    else:
        num_classes = len(meta) if meta is not None else 1000
    classes_file, classes = _parse_classes(c, fields, base_dir, num_classes)
    if len(c.problems) > before or num_classes is None:
        return None
    return ModelSpec(
        source="torchvision",
        name=name,
        num_classes=num_classes,
        weights=weights,
        classes_file=classes_file,
        classes=classes,
    )


def _weights_file(c: _Checker, value: Any, key: str, base_dir: Path) -> Path | None:
    """A weights file path relative to the config, checked for its suffix and existence."""
    raw = c.string(value, key)
    if raw is None:
        return None
    path = (base_dir / Path(raw).expanduser()).resolve()
    if path.suffix.lower() not in WEIGHT_FILE_SUFFIXES:
        c.error(key, f"{raw!r}: expected a {' or '.join(WEIGHT_FILE_SUFFIXES)} weights file")
    elif not path.is_file():
        c.error(key, f"no such file: {path}")
    return path


def _parse_file_model(c: _Checker, fields: dict[str, Any], base_dir: Path) -> ModelSpec | None:
    before = len(c.problems)
    path = _weights_file(c, fields["file"], "model.file", base_dir)
    arch: str | None = None
    if "arch" not in fields:
        c.error("model.arch", "missing; name the architecture, e.g. 'arch: resnet50' (see 'lrp models')")
    else:
        arch = c.string(fields["arch"], "model.arch")
        if arch is not None and arch not in architectures():
            c.error(
                "model.arch",
                f"unknown architecture {arch!r}{_suggest(arch, architectures())}; "
                "run 'lrp models' to list them",
            )
    num_classes: int | None = None
    if "num_classes" not in fields:
        c.error("model.num_classes", "missing; the number of classes the weights were trained for")
    else:
        num_classes = c.integer(fields["num_classes"], "model.num_classes")
    classes_file, classes = _parse_classes(c, fields, base_dir, num_classes)
    if len(c.problems) > before or path is None or arch is None or num_classes is None:
        return None
    return ModelSpec(
        source="file",
        name=arch,
        num_classes=num_classes,
        path=path,
        classes_file=classes_file,
        classes=classes,
    )


def _parse_classes(
    c: _Checker, fields: dict[str, Any], base_dir: Path, num_classes: int | None
) -> tuple[Path | None, tuple[str, ...] | None]:
    if "classes" not in fields or fields["classes"] is None:
        return None, None
    raw = c.string(fields["classes"], "model.classes")
    if raw is None:
        return None, None
    path = (base_dir / Path(raw).expanduser()).resolve()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        c.error("model.classes", f"no such file: {path}")
        return None, None
    except (OSError, UnicodeDecodeError) as exc:
        c.error("model.classes", f"cannot read {path} ({exc})")
        return None, None
    names = tuple(line.strip() for line in text.splitlines() if line.strip())
    if num_classes is not None and len(names) != num_classes:
        c.error(
            "model.classes",
            f"{raw} has {len(names)} class names (one per non-empty line) but the model has "
            f"{num_classes} classes (model.num_classes)",
        )
        return None, None
    return path, names


def _parse_preprocess(c: _Checker, value: Any, default: Preprocess) -> Preprocess | None:
    fields = c.mapping(value, "preprocess", _PREPROCESS_KEYS)
    if fields is None:
        return None
    resize = c.integer(fields["resize"], "preprocess.resize") if "resize" in fields else default.resize
    crop = c.integer(fields["crop"], "preprocess.crop") if "crop" in fields else default.crop
    mean = c.triple(fields["mean"], "preprocess.mean") if "mean" in fields else default.mean
    std = c.triple(fields["std"], "preprocess.std", nonzero=True) if "std" in fields else default.std
    if resize is None or crop is None or mean is None or std is None:
        return None
    return Preprocess(resize=resize, crop=crop, mean=tuple(mean), std=tuple(std))  # type: ignore[arg-type]


def _rule_params(rule: str) -> list[str]:
    cls = AFFINE_RULES[rule]
    return [p for p in inspect.signature(cls.__init__).parameters if p != "self"]


def _parse_rule_spec(c: _Checker, value: Any, path: str) -> Any:
    """One selector's rule: a name, or a mapping with ``rule`` and the rule's parameters."""
    choices = sorted(AFFINE_RULES)
    if isinstance(value, str):
        if value not in AFFINE_RULES:
            c.error(path, f"unknown rule {value!r}{_suggest(value, choices)}; choose one of: {', '.join(choices)}")
            return None
        return value
    if not isinstance(value, Mapping):
        c.error(path, f"expected a rule name or a mapping with 'rule', got {_show(value)}")
        return None
    if "rule" not in value:
        c.error(_join(path, "rule"), f"missing; one of: {', '.join(choices)}")
        return None
    name = value["rule"]
    if not isinstance(name, str) or name not in AFFINE_RULES:
        hint = _suggest(str(name), choices) if isinstance(name, str) else ""
        c.error(_join(path, "rule"), f"unknown rule {name!r}{hint}; choose one of: {', '.join(choices)}")
        return None
    allowed = _rule_params(name)
    out: dict[str, Any] = {"rule": name}
    ok = True
    for key, item in value.items():
        if key == "rule":
            continue
        where = _join(path, str(key))
        if key not in allowed:
            accepts = ", ".join(allowed) if allowed else "no parameters"
            c.error(where, f"unknown parameter for rule {name!r}; it accepts: {accepts}")
            ok = False
            continue
        if key in _BOUND_PARAMS:
            bound = c.triple(item, where)
            ok = ok and bound is not None
            out[key] = list(bound) if bound is not None else None
        else:
            number = c.number(item, where, minimum=0.0)
            ok = ok and number is not None
            out[key] = number
    if not ok:
        return None
    try:  # value checks of the rule itself (e.g. alpha - beta = 1)
        from lrpcli.rules import make_rule

        make_rule(name, **{k: v for k, v in out.items() if k != "rule"})
    except (ValueError, TypeError) as exc:
        c.error(path, str(exc))
        return None
    return out


def _parse_rules(c: _Checker, value: Any) -> str | dict[str, Any] | None:
    presets = list(PRESETS)
    if isinstance(value, str):
        if value not in PRESETS:
            c.error("rules", f"unknown preset {value!r}{_suggest(value, presets)}; choose one of: {', '.join(presets)}")
            return None
        return value
    if not isinstance(value, Mapping) or not value:
        c.error("rules", f"expected a preset name or a mapping of selectors to rules, got {_show(value)}")
        return None
    out: dict[str, Any] = {}
    ok = True
    for key, item in value.items():
        if not isinstance(key, str) or not key:
            c.error("rules", f"selector {key!r} must be text: first, last, a layer type or a layer-name glob")
            ok = False
            continue
        path = f"rules.{key}"
        if key == "preset":
            if not isinstance(item, str) or item not in PRESETS:
                hint = _suggest(str(item), presets)
                c.error(path, f"unknown preset {item!r}{hint}; choose one of: {', '.join(presets)}")
                ok = False
            else:
                out[key] = item
            continue
        spec = _parse_rule_spec(c, item, path)
        if spec is None:
            ok = False
        else:
            out[key] = spec
    return out if ok else None


def _parse_options(c: _Checker, value: Any, pp: Preprocess | None) -> dict[str, Any] | None:
    fields = c.mapping(value, "rule_options", _OPTION_KEYS)
    if fields is None:
        return None
    out: dict[str, Any] = {
        "epsilon": DEFAULT_EPSILON,
        "gamma": DEFAULT_GAMMA,
        "stabilizer": DEFAULT_STABILIZER,
        "ignore_bias": False,
    }
    ok = True
    for key in ("epsilon", "gamma", "stabilizer"):
        if key in fields:
            number = c.number(fields[key], f"rule_options.{key}", minimum=0.0)
            ok = ok and number is not None
            out[key] = number
    if "ignore_bias" in fields:
        flag = c.boolean(fields["ignore_bias"], "rule_options.ignore_bias")
        ok = ok and flag is not None
        out["ignore_bias"] = flag
    if pp is not None:  # the values of pixels 0 and 1 after normalisation (pixel_bounds)
        default_low = tuple((0.0 - m) / s for m, s in zip(pp.mean, pp.std))
        default_high = tuple((1.0 - m) / s for m, s in zip(pp.mean, pp.std))
    else:
        default_low, default_high = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
    for key, default in (("low", default_low), ("high", default_high)):
        if key in fields and fields[key] is not None:
            bound = c.triple(fields[key], f"rule_options.{key}")
            ok = ok and bound is not None
            out[key] = bound
        else:
            out[key] = default
    if ok and any(lo > hi for lo, hi in zip(out["low"], out["high"])):
        c.error("rule_options.low", f"low {list(out['low'])} exceeds high {list(out['high'])}")
        ok = False
    return out if ok else None


def _parse_render(c: _Checker, value: Any) -> RenderSettings | None:
    fields = c.mapping(value, "render", _RENDER_KEYS)
    if fields is None:
        return None
    settings = RenderSettings()
    ok = True
    if "cmap" in fields:
        cmap = c.string(fields["cmap"], "render.cmap")
        if cmap is not None:
            from lrpcli.render import get_cmap

            try:
                get_cmap(cmap)
            except ValueError as exc:
                c.error("render.cmap", str(exc).split(" Valid choices")[0] + "; see matplotlib colour maps (e.g. bwr, seismic, coolwarm, bwr_black)")
                cmap = None
        ok = ok and cmap is not None
        settings = replace(settings, cmap=cmap or settings.cmap)
    if fields.get("percentile") is not None:
        pct = c.number(fields["percentile"], "render.percentile", minimum=0.0, maximum=100.0, exclusive_min=True)
        ok = ok and pct is not None
        settings = replace(settings, percentile=pct)
    if "overlay_alpha" in fields:
        alpha = c.number(fields["overlay_alpha"], "render.overlay_alpha", minimum=0.0, maximum=1.0)
        ok = ok and alpha is not None
        settings = replace(settings, overlay_alpha=alpha if alpha is not None else 0.8)
    return settings if ok else None


def _parse_report(c: _Checker, value: Any) -> ReportSettings | None:
    fields = c.mapping(value, "report", _REPORT_KEYS)
    if fields is None:
        return None
    settings = ReportSettings()
    ok = True
    if "tolerance" in fields:
        tol = c.number(fields["tolerance"], "report.tolerance", minimum=0.0, exclusive_min=True)
        ok = ok and tol is not None
        settings = replace(settings, tolerance=tol if tol is not None else DEFAULT_TOLERANCE)
    if "ledger_steps" in fields:
        flag = c.boolean(fields["ledger_steps"], "report.ledger_steps")
        ok = ok and flag is not None
        settings = replace(settings, ledger_steps=bool(flag))
    return settings if ok else None


def _parse_input(c: _Checker, value: Any) -> int | None:
    fields = c.mapping(value, "input", _INPUT_KEYS)
    if not fields or "max_pixels" not in fields:
        return DEFAULT_MAX_PIXELS
    if fields["max_pixels"] is None:
        return None
    return c.integer(fields["max_pixels"], "input.max_pixels") or DEFAULT_MAX_PIXELS
