"""The ``python`` model source: a user's ``nn.Module`` class from a ``.py`` file plus weights.

Importing the file runs its code with the user's permissions, so the command line refuses a
config naming one unless the file is also given with ``--allow-python FILE``; this module only
does the loading. The file is imported under a unique module name (it never shadows or is
shadowed by an installed module), without writing ``__pycache__`` next to it; the class is built with the config's ``kwargs``, and the
weights are read like a ``file`` model's (``torch.load(weights_only=True)`` or safetensors) and
must match the module's state dict exactly. Every problem raises :class:`ModelLoadError`
naming the file and the class.
"""

from __future__ import annotations

import difflib
import hashlib
import importlib.util
import itertools
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from torch import nn

from lrpcli.models.spec import ModelLoadError, ModelSpec
from lrpcli.models.weights import load_into, load_state_dict_file, sha256_file

__all__ = ["build_python_model", "import_module_class", "infer_num_classes", "parse_reference"]

_counter = itertools.count(1)


def parse_reference(text: str) -> tuple[str, str] | None:
    """Split ``path/to/file.py:ClassName`` into ``(path, class name)``; ``None`` if malformed."""
    path, sep, name = text.strip().rpartition(":")
    if not sep or not path or not name.isidentifier():
        return None
    return path, name


def _module_name(code: Path) -> str:
    digest = hashlib.sha256(str(code).encode("utf-8", "surrogateescape")).hexdigest()[:12]
    return f"lrpcli_user_model_{digest}_{next(_counter)}"


def import_module_class(code: Path, class_name: str) -> type[nn.Module]:
    """Import ``code`` under a fresh module name and return its ``nn.Module`` subclass ``class_name``."""
    where = f"{code}:{class_name}"
    if not code.is_file():
        raise ModelLoadError(f"{where}: the Python file does not exist")
    name = _module_name(code)
    spec = importlib.util.spec_from_file_location(name, code)
    if spec is None or spec.loader is None:
        raise ModelLoadError(f"{where}: cannot import {code} as a Python module")
    module: ModuleType = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and typing in the user's file look themselves up here
    no_bytecode = sys.dont_write_bytecode
    sys.dont_write_bytecode = True  # write nothing (__pycache__) next to the user's file
    try:
        spec.loader.exec_module(module)
    except (Exception, SystemExit) as exc:
        sys.modules.pop(name, None)
        raise ModelLoadError(
            f"{where}: running {code.name} failed ({type(exc).__name__}: {exc})"
        ) from exc
    finally:
        sys.dont_write_bytecode = no_bytecode
    cls = getattr(module, class_name, None)
    if cls is None:
        defined = sorted(
            k for k, v in vars(module).items()
            if isinstance(v, type) and issubclass(v, nn.Module) and v.__module__ == name
        )
        close = difflib.get_close_matches(class_name, defined, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        listed = ", ".join(defined) if defined else "none"
        raise ModelLoadError(
            f"{where}: {code.name} defines no {class_name!r}{hint}; nn.Module classes defined "
            f"there: {listed}"
        )
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise ModelLoadError(
            f"{where}: {class_name} is a {type(cls).__name__}, not a torch.nn.Module subclass"
        )
    return cls


def infer_num_classes(module: nn.Module, input_size: int, where: str) -> int:
    """The number of outputs of ``module`` on one zero image ``(1, 3, input_size, input_size)``."""
    try:
        with torch.no_grad():
            logits = module.eval()(torch.zeros(1, 3, input_size, input_size))
    except Exception as exc:
        raise ModelLoadError(
            f"{where}: the model fails on a 1x3x{input_size}x{input_size} input "
            f"(preprocess.crop) ({type(exc).__name__}: {exc})"
        ) from exc
    if not isinstance(logits, torch.Tensor) or logits.dim() != 2 or logits.shape[0] != 1:
        shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise ModelLoadError(
            f"{where}: the model must return logits of shape (batch, classes), got {shape}"
        )
    return int(logits.shape[1])


def build_python_model(spec: ModelSpec) -> tuple[nn.Module, int, str]:
    """Build ``spec``'s class, load its weights; return ``(module, num_classes, weights_source)``."""
    assert spec.code is not None and spec.path is not None
    where = f"{spec.code}:{spec.name}"
    cls = import_module_class(spec.code, spec.name)
    kwargs: dict[str, Any] = dict(spec.kwargs)
    try:
        module = cls(**kwargs)
    except Exception as exc:
        shown = ", ".join(f"{k}={v!r}" for k, v in kwargs.items())
        raise ModelLoadError(
            f"{where}: cannot construct {spec.name}({shown}) ({type(exc).__name__}: {exc}); "
            "check model.kwargs"
        ) from exc
    if not spec.path.is_file():
        raise ModelLoadError(f"{spec.path}: weights file not found")
    state = load_state_dict_file(spec.path)
    load_into(module, state, spec.path)
    outputs = infer_num_classes(module, spec.input_size, where)
    if spec.num_classes and outputs != spec.num_classes:
        raise ModelLoadError(
            f"{where}: the model returns {outputs} logits but model.num_classes is {spec.num_classes}"
        )
    source = (
        f"python {spec.code} (sha256 {sha256_file(spec.code)}), class {spec.name}, "
        f"weights {spec.path} (sha256 {sha256_file(spec.path)})"
    )
    return module, outputs, source
