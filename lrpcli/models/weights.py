"""Weights files: reading state dicts safely, checking them against a module, torch hub's cache.

``.pth``/``.pt`` files are read with ``torch.load(weights_only=True)`` (a pickled payload is
refused), ``.safetensors`` with the safetensors package; :func:`check_state_dict` names the
first mismatches between a file and an architecture.
"""

from __future__ import annotations

import hashlib
import pickle
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lrpcli.models.spec import ModelLoadError, ModelSpec

__all__ = [
    "WEIGHT_FILE_SUFFIXES",
    "cached_weights_path",
    "check_state_dict",
    "download_weights",
    "load_into",
    "load_state_dict_file",
    "sha256_file",
]

WEIGHT_FILE_SUFFIXES: tuple[str, ...] = (".pth", ".pt", ".safetensors")
"""File suffixes accepted for weights files."""

_DOWNLOAD_TIMEOUT_S = 60.0
_MAX_LISTED = 5


def sha256_file(path: Path) -> str:
    """The SHA-256 of a file's bytes, as hex."""
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


def check_state_dict(
    module: nn.Module,
    state: Mapping[str, torch.Tensor],
    path: Path,
    *,
    hint: str = "check model.arch and model.num_classes in the config",
) -> None:
    """Raise :class:`ModelLoadError` listing the first mismatches between ``state`` and ``module``
    (ending with ``hint``: which config keys to check)."""
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
    text += f"\n  {hint}"
    raise ModelLoadError(text)


def load_into(
    module: nn.Module,
    state: Mapping[str, torch.Tensor],
    path: Path,
    *,
    hint: str = "check model.arch and model.num_classes in the config",
) -> None:
    """Load ``state`` (read from ``path``) into ``module`` strictly: mismatches are listed by
    :func:`check_state_dict`, anything else ``load_state_dict`` refuses raises :class:`ModelLoadError`."""
    check_state_dict(module, state, path, hint=hint)
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:  # dtype or other problems the check does not see
        raise ModelLoadError(f"{path}: {exc}") from exc


def cached_weights_path(weights: Any) -> Path:
    """Where torch hub keeps (or would keep) the file of a torchvision weights enum member."""
    filename = weights.url.rsplit("/", 1)[-1]
    return Path(torch.hub.get_dir()) / "checkpoints" / filename


def download_weights(weights: Any, path: Path, spec: ModelSpec) -> None:
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
