"""The ``timm:`` model source: a timm architecture by name with the weights of a local checkpoint.

``model: {timm: NAME, file: CHECKPOINT}`` builds ``timm.create_model(NAME, pretrained=False)``
and loads a ``.pth``/``.pt`` (``torch.load(weights_only=True)``) or ``.safetensors`` file into it:
lrpcli never downloads weights, so a config that names only the model fails to load (exit 3) with
the address of the weights and the config line that uses them. The preprocessing defaults to
timm's pretrained config for NAME (``timm.data.resolve_data_config``); the class names come from
``classes:``, else from a ``config.json`` with ``label_names`` beside the checkpoint (the layout of
timm's Hugging Face repositories), else from timm's ImageNet metadata when the class count fits.

timm is an optional dependency (``pip install 'lrpcli[timm]'``), imported only here and only when
a timm config is read or loaded.
"""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path
from types import ModuleType
from typing import Any

from lrpcli.hints import did_you_mean
from lrpcli.io.preprocess import Preprocess
from lrpcli.models.imagenet import IMAGENET_PREPROCESS
from lrpcli.models.source_base import Checker, ModelSource, categories_for, parse_classes, weights_file
from lrpcli.models.spec import LoadedModel, ModelLoadError, ModelSpec
from lrpcli.models.weights import load_into, load_state_dict_file, sha256_file

__all__ = ["TimmSource", "timm_preprocess"]

_INSTALL = "pip install 'lrpcli[timm]' (or: pip install timm)"


def _timm() -> ModuleType | None:
    try:
        import timm
    except ImportError:
        return None
    return timm


def _pretrained_cfg(name: str) -> dict[str, Any] | None:
    """timm's pretrained config for ``name`` (``resnet50`` or ``resnet50.a1_in1k``) as a dict."""
    from timm.models import get_pretrained_cfg

    cfg = get_pretrained_cfg(name)
    return None if cfg is None else cfg.to_dict()


def timm_preprocess(name: str) -> Preprocess:
    """The preprocessing of ``name``'s pretrained weights: ``crop`` is timm's input size, ``resize``
    is ``floor(crop / crop_pct)`` as in timm's eval transforms; ImageNet's when timm has no config.
    (timm resizes bicubically, lrpcli bilinearly.)"""
    from timm.data import resolve_data_config

    cfg = _pretrained_cfg(name)
    if cfg is None:
        return IMAGENET_PREPROCESS
    data = resolve_data_config(pretrained_cfg=cfg)
    crop = int(data["input_size"][-1])
    resize = int(math.floor(crop / float(data.get("crop_pct") or 1.0)))
    mean = tuple(float(v) for v in data["mean"])
    std = tuple(float(v) for v in data["std"])
    return Preprocess(resize, crop, mean, std)  # type: ignore[arg-type]


class TimmSource(ModelSource):
    """A timm architecture with a local checkpoint (``timm: NAME, file: CHECKPOINT``)."""

    key = "timm"
    keys = ("timm", "file", "num_classes", "classes")
    example = "'timm: NAME, file: CHECKPOINT'"

    def parse(self, c: Checker, fields: dict[str, Any], base_dir: Path) -> ModelSpec | None:
        before = len(c.problems)
        name = c.string(fields["timm"], "model.timm")
        timm = _timm()
        if timm is None:
            c.error("model.timm", f"timm models need the timm package: {_INSTALL}")
        elif name is not None and not timm.is_model(name):
            known = timm.list_models(f"{name.split('.')[0][:3]}*") if name else []
            c.error(
                "model.timm",
                f"unknown timm model {name!r}{did_you_mean(name, known)}; "
                "list them with: python -c \"import timm; print(timm.list_models())\"",
            )
        path = weights_file(c, fields["file"], "model.file", base_dir) if fields.get("file") is not None else None
        num_classes: int | None = None
        if fields.get("num_classes") is not None:
            num_classes = c.integer(fields["num_classes"], "model.num_classes")
        classes_file, classes = parse_classes(c, fields, base_dir, num_classes)
        if len(c.problems) > before or name is None:
            return None
        return ModelSpec(
            source=self.key,
            name=name,
            num_classes=num_classes or 0,
            path=path,
            classes_file=classes_file,
            classes=classes,
        )

    def to_config(self, spec: ModelSpec) -> dict[str, Any]:
        section: dict[str, Any] = {"timm": spec.name}
        if spec.path is not None:
            section["file"] = str(spec.path)
        if spec.num_classes:
            section["num_classes"] = spec.num_classes
        return self.with_classes(spec, section)

    def describe(self, spec: ModelSpec) -> str:
        return f"timm {spec.name} from {spec.path}" if spec.path is not None else f"timm {spec.name} (no checkpoint)"

    def default_preprocess(self, spec: ModelSpec) -> Preprocess:
        return timm_preprocess(spec.name)

    def load(self, spec: ModelSpec) -> LoadedModel:
        timm = _timm()
        if timm is None:
            raise ModelLoadError(f"timm model {spec.name}: the timm package is not installed: {_INSTALL}")
        if spec.path is None:
            raise ModelLoadError(_no_checkpoint(spec.name))
        path = spec.path
        if not path.is_file():
            raise ModelLoadError(f"{path}: checkpoint not found")
        state = load_state_dict_file(path)
        cfg = _pretrained_cfg(spec.name) or {}
        num_classes = spec.num_classes or _classes_in(state, cfg)
        try:
            module = timm.create_model(spec.name, pretrained=False, num_classes=num_classes)
        except Exception as exc:  # noqa: BLE001 - timm raises many kinds; all mean "cannot build"
            raise ModelLoadError(f"cannot build timm model {spec.name}: {type(exc).__name__}: {exc}") from exc
        load_into(module, state, path, hint="check model.timm and model.num_classes in the config")
        spec = replace(spec, num_classes=num_classes)
        if spec.classes is not None and len(spec.classes) != num_classes:
            raise ModelLoadError(
                f"{spec.classes_file}: {len(spec.classes)} class names (one per non-empty line) but the "
                f"checkpoint {path.name} has {num_classes} classes"
            )
        source = f"timm {spec.name}, checkpoint {path} (sha256 {sha256_file(path)})"
        return LoadedModel(module, spec, source, categories_for(spec, _label_names(path, module, num_classes)))


def _classes_in(state: dict[str, Any], cfg: dict[str, Any]) -> int:
    """The class count of a checkpoint: its classifier's rows (timm names the classifier in the
    pretrained config), else the config's count, else 1000."""
    heads = cfg.get("classifier") or ()
    for head in (heads,) if isinstance(heads, str) else heads:
        weight = state.get(f"{head}.weight")
        if weight is not None and weight.ndim >= 2:
            return int(weight.shape[0])
    return int(cfg.get("num_classes") or 1000)


def _label_names(path: Path, module: Any, num_classes: int) -> list[str] | None:
    """Class names for the checkpoint: ``label_names`` of a ``config.json`` beside it (timm's hub
    layout), else timm's ImageNet metadata for the model's pretrained tag, else ``None``."""
    config = path.parent / "config.json"
    try:
        names = json.loads(config.read_text(encoding="utf-8")).get("label_names")
    except (OSError, ValueError, AttributeError):
        names = None
    if isinstance(names, list) and len(names) == num_classes:
        return [str(n) for n in names]
    try:
        from timm.data import ImageNetInfo, infer_imagenet_subset

        subset = infer_imagenet_subset(module)  # imagenet-1k: lrpcli's own short names (categories_for)
        labels = ImageNetInfo(subset).label_descriptions() if subset and subset != "imagenet-1k" else None
    except Exception:  # noqa: BLE001 - only names; the generic ones below do as well
        return None
    return list(labels) if labels is not None and len(labels) == num_classes else None


def _no_checkpoint(name: str) -> str:
    """How to get the weights of ``name`` onto this machine and name them in the config."""
    cfg = _pretrained_cfg(name) or {}
    hub = cfg.get("hf_hub_id")
    where = (
        f"https://huggingface.co/{hub}/resolve/main/model.safetensors" if hub else cfg.get("url") or None
    )  # fmt: skip
    lines = [
        f"timm model {name}: no checkpoint file given, and lrpcli never downloads weights.",
        "  to fix: on a machine with network access, download "
        + (f"{where}" if where else "the weights")
        + f" (or save them: python -c \"import timm, torch; torch.save(timm.create_model('{name}', "
        f"pretrained=True).state_dict(), '{name}.pth')\"), copy the file here and name it in the config:",
        f"    model: {{timm: {name}, file: {'model.safetensors' if hub else name + '.pth'}}}",
    ]
    return "\n".join(lines)
