"""Reading config files: a strict YAML loader (no duplicate keys), built-in configs, overrides.

:func:`load_config` reads, validates (:func:`lrpcli.config.parse.parse_config`) and resolves a
file or a built-in name.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from lrpcli.config.builtin import BUILTIN_CONFIGS, builtin_config_path
from lrpcli.config.parse import parse_config
from lrpcli.config.schema import Config, ConfigError

__all__ = ["BUILTIN_CONFIGS", "builtin_config_path", "load_config"]

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
