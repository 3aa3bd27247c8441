"""The ``huggingface:`` model source: a ``transformers`` image classifier saved in a local folder.

``model: {huggingface: FOLDER}`` loads what ``save_pretrained`` wrote (``config.json`` and
``model.safetensors``) with ``AutoModelForImageClassification.from_pretrained(FOLDER,
local_files_only=True)``; lrpcli never downloads, so a hub id that is not a folder fails to load
(exit 3) saying how to save the model on a machine with network access. The model is traced into
a :class:`HuggingFaceClassifier` (``forward(pixel_values) -> logits``, a torch.fx graph that the
engine traces again): transformers' forward passes branch on shapes and configuration flags in
Python, which :mod:`lrpcli.models.concrete_trace` fixes for the input size lrpcli feeds.

The preprocessing defaults to the folder's ``preprocessor_config.json`` (read as JSON, see
:func:`processor_preprocess`); the class names come from ``classes:``, else ``config.json``'s
``id2label``. transformers is an optional dependency (``pip install 'lrpcli[huggingface]'``),
imported only here and only when such a model is loaded.
"""

from __future__ import annotations

import importlib.util
import json
import math
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
import torch.fx as fx
from torch import nn

from lrpcli.io.preprocess import Preprocess
from lrpcli.models.concrete_trace import trace_with_values
from lrpcli.models.imagenet import IMAGENET_PREPROCESS
from lrpcli.models.source_base import Checker, ModelSource, categories_for, parse_classes
from lrpcli.models.spec import LoadedModel, ModelLoadError, ModelSpec
from lrpcli.models.weights import sha256_file

__all__ = ["HuggingFaceClassifier", "HuggingFaceSource", "huggingface_preprocess", "processor_preprocess"]

_INSTALL = "pip install 'lrpcli[huggingface]' (or: pip install transformers)"
WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
PROCESSOR_NAME = "preprocessor_config.json"
_MAX_LISTED = 5
#: processors (name without ``ImageProcessor``/``FeatureExtractor``) whose plain-number ``size`` is the
#: shorter side (transformers' ``default_to_square = False``); for the others it is height and width
_SHORTER_SIDE_PROCESSORS = frozenset(
    {"ConvNext", "Bit", "CLIP", "ChineseCLIP", "MobileNetV1", "MobileNetV2", "Levit", "PoolFormer", "EfficientFormer"}
)
_GENERIC_LABEL = re.compile(r"LABEL_\d+")


def _has_transformers() -> bool:
    return importlib.util.find_spec("transformers") is not None


# --------------------------------------------------------------------------- the traced model


class _Logits(nn.Module):
    """``model(pixel_values).logits``: the forward pass that is traced."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.model(pixel_values=pixel_values, return_dict=True).logits


class HuggingFaceClassifier(fx.GraphModule):
    """A transformers ``*ForImageClassification`` model as a torch.fx graph: ``forward(pixel_values)``
    returns its logits, ``(batch, classes)``.

    Built by :meth:`trace` for one input size (``size`` x ``size`` pixels; any batch size). Its
    submodules and parameters are the transformers model's own, under the same names
    (``vit.encoder.layer.0.attention...``), so rule selectors name them as transformers does.
    """

    def __init__(self, root: nn.Module | dict[str, Any], graph: fx.Graph, class_name: str = "HuggingFaceClassifier") -> None:
        super().__init__(root, graph, class_name)

    @classmethod
    def trace(cls, model: nn.Module, size: int) -> HuggingFaceClassifier:
        """Trace ``model`` (in eval mode) on ``size`` x ``size`` inputs and check that the graph
        gives the model's own logits on another batch size. Raises :class:`ModelLoadError`."""
        name = type(model).__name__
        model.eval()
        wrapper = _Logits(model)
        example = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(0))
        try:
            graph = trace_with_values(wrapper, example)
        except Exception as exc:  # noqa: BLE001 - transformers and fx raise many kinds; all mean "cannot trace"
            raise ModelLoadError(
                f"cannot trace {name} on {size}x{size} inputs ({type(exc).__name__}: {exc}); if the model "
                "takes another input size, set preprocess.crop (and preprocess.resize) to it in the config"
            ) from exc
        owned: dict[str, Any] = {}
        for node in graph.nodes:  # without the wrapper's "model." prefix: names as transformers gives them
            if node.op in ("call_module", "get_attr"):
                target = str(node.target)
                node.target = target.removeprefix("model.")
                owned[node.target] = _fetch(wrapper, target)  # tracing constants live on the wrapper
        classifier = cls(owned, graph)
        check = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(1))
        with torch.no_grad():
            expected = model(pixel_values=check, return_dict=True).logits
            got = classifier(check)
        scale = float(expected.abs().max()) or 1.0
        if got.shape != expected.shape or not torch.allclose(got, expected, rtol=1e-4, atol=1e-5 * scale):
            difference = float((got - expected).abs().max()) if got.shape == expected.shape else float("nan")
            raise ModelLoadError(
                f"the traced graph of {name} does not reproduce the model's own logits (largest difference "
                f"{difference:.3g} of {scale:.3g}): its forward pass depends on more than the input's shape, "
                "which lrpcli cannot explain"
            )
        return classifier


def _fetch(root: nn.Module, target: str) -> Any:
    """The submodule, parameter, buffer or constant at the dotted path ``target`` of ``root``."""
    obj: Any = root
    for part in target.split("."):
        obj = getattr(obj, part)
    return obj


# --------------------------------------------------------------------------- preprocessing


def _read_json(path: Path) -> dict[str, Any] | None:
    """A JSON object file, ``None`` if there is none; ``ValueError`` if it cannot be read."""
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: not a readable JSON file ({exc})") from exc
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


def _processor_family(data: dict[str, Any]) -> str:
    """``ViT`` for ``ViTImageProcessor``, ``ViTImageProcessorFast``, ``ViTFeatureExtractor``, ..."""
    kind = str(data.get("image_processor_type") or data.get("feature_extractor_type") or "")
    return re.sub(r"(ImageProcessor(Fast|Pil)?|FeatureExtractor)$", "", kind)


def _side(value: Any, key: str) -> int:
    """A positive whole number of pixels from the processor config."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value) or value < 1:
        raise ValueError(f"{key}: expected a positive whole number of pixels, got {value!r}")
    return int(value)


def _square(value: Any, key: str) -> int:
    """One side of a square ``{"height": n, "width": n}`` (or a plain number)."""
    if isinstance(value, dict):
        if "height" not in value or "width" not in value:
            raise ValueError(f"{key}: expected height and width, got {value!r}")
        height, width = _side(value["height"], f"{key}.height"), _side(value["width"], f"{key}.width")
        if height != width:
            raise ValueError(
                f"{key}: {height}x{width} pixels (height x width), but lrpcli's model inputs are square"
            )
        return height
    return _side(value, key)


def _triple(value: Any, key: str) -> tuple[float, float, float]:
    values = list(value) if isinstance(value, (list, tuple)) else [value]
    if len(values) == 1:
        values = values * 3
    if len(values) != 3 or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        raise ValueError(f"{key}: expected one number or three (R, G, B), got {value!r}")
    return (float(values[0]), float(values[1]), float(values[2]))


def processor_preprocess(data: dict[str, Any], image_size: int | None = None) -> Preprocess:
    """lrpcli's :class:`Preprocess` for a transformers image processor's config (its JSON).

    * ``size`` ``{"height": n, "width": n}`` (ViT, Swin, DeiT, BEiT): squash the image to n x n
      (``resize_mode="squash"``); ``{"shortest_edge": n}``: resize its shorter side to n. A plain
      number is the shorter side for the processors transformers treats so (ConvNeXt, BiT, CLIP,
      MobileNet, LeViT, PoolFormer, EfficientFormer), else height and width.
    * ConvNeXt's processor (also ResNet's): shortest edge n < 384 is resized to
      ``int(n / crop_pct)`` and centre-cropped to n; n >= 384 is squashed to n x n.
    * ``do_center_crop`` with ``crop_size``: the crop; otherwise the crop is the resized size
      (for a shorter-side resize this centre-crops a square, where transformers would keep the
      whole non-square image). ``do_resize: false``: the image is resized to the crop anyway
      (``image_size`` of the model's config, else the crop size), as lrpcli's inputs have one size.
    * ``image_mean``/``image_std`` with ``rescale_factor`` folded in (``do_rescale``,
      ``do_normalize`` respected); ImageNet's mean and std when the file has none.

    Raises ``ValueError`` for sizes lrpcli cannot represent (not square, no known keys).
    """
    family = _processor_family(data)
    size: Any = data.get("size")
    if isinstance(size, (list, tuple)) and len(size) == 2:
        size = {"height": size[0], "width": size[1]}
    elif isinstance(size, (int, float)) and not isinstance(size, bool):
        size = {"shortest_edge": size} if family in _SHORTER_SIDE_PROCESSORS else {"height": size, "width": size}
    if size is not None and not (isinstance(size, dict) and ("shortest_edge" in size or "height" in size)):
        raise ValueError(f"size: expected {{height, width}} or {{shortest_edge}}, got {data.get('size')!r}")
    crop: int | None = None
    if data.get("do_center_crop") and data.get("crop_size") is not None:
        crop = _square(data["crop_size"], "crop_size")
    mode = "shorter"
    if size is None:
        resize = crop or image_size or IMAGENET_PREPROCESS.crop
    elif "shortest_edge" in size:
        resize = _side(size["shortest_edge"], "size.shortest_edge")
        if family == "ConvNext":
            crop_pct = data.get("crop_pct", 224 / 256)
            if not isinstance(crop_pct, (int, float)) or isinstance(crop_pct, bool) or not 0 < crop_pct <= 1:
                raise ValueError(f"crop_pct: expected a number in (0, 1], got {crop_pct!r}")
            if resize < 384:
                resize, crop = int(resize / crop_pct), resize
            else:
                mode, crop = "squash", resize
    else:
        resize, mode = _square(size, "size"), "squash"
    crop = crop or resize
    if data.get("do_resize", True) is False:  # fed as they are by transformers; lrpcli needs one size
        resize, crop, mode = image_size or crop, image_size or crop, "shorter"
    mean = _triple(data.get("image_mean", IMAGENET_PREPROCESS.mean), "image_mean")
    std = _triple(data.get("image_std", IMAGENET_PREPROCESS.std), "image_std")
    if data.get("do_normalize", True) is False:
        mean, std = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
    if any(s == 0 for s in std):
        raise ValueError(f"image_std: values must be non-zero, got {list(std)}")
    factor = data.get("rescale_factor", 1 / 255) if data.get("do_rescale", True) is not False else 1.0
    if not isinstance(factor, (int, float)) or isinstance(factor, bool) or factor <= 0:
        raise ValueError(f"rescale_factor: expected a positive number, got {factor!r}")
    scale = 255.0 * float(factor)  # the model sees (255 x pixel x factor - mean) / std, pixel in [0, 1]
    if math.isclose(scale, 1.0, rel_tol=1e-9):  # 1/255 written as 0.00392156862745098
        scale = 1.0
    mean = (mean[0] / scale, mean[1] / scale, mean[2] / scale)
    std = (std[0] / scale, std[1] / scale, std[2] / scale)
    return Preprocess(resize, crop, mean, std, mode)


def _image_size(config: dict[str, Any] | None) -> int | None:
    """The square input size ``config.json`` names (``image_size``), if any."""
    value = (config or {}).get("image_size")
    if isinstance(value, (list, tuple)) and len(value) == 2 and value[0] == value[1]:
        value = value[0]
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def huggingface_preprocess(folder: Path) -> Preprocess:
    """The preprocessing of the model saved in ``folder``: its ``preprocessor_config.json``
    (:func:`processor_preprocess`), else ImageNet's with the crop set to ``config.json``'s
    ``image_size`` (resize ``floor(crop / 0.875)``). ``ValueError`` if a file cannot be used."""
    config = _read_json(folder / CONFIG_NAME)
    data = _read_json(folder / PROCESSOR_NAME)
    if data is None:
        crop = _image_size(config) or IMAGENET_PREPROCESS.crop
        return replace(IMAGENET_PREPROCESS, resize=int(math.floor(crop / 0.875)), crop=crop)
    try:
        return processor_preprocess(data, _image_size(config))
    except ValueError as exc:
        raise ValueError(f"{folder / PROCESSOR_NAME}: {exc}") from None


# --------------------------------------------------------------------------- the source


def _label_names(id2label: Any, num_classes: int) -> list[str] | None:
    """``id2label`` in class order; ``None`` for transformers' placeholders (``LABEL_0``...)."""
    if not isinstance(id2label, dict) or len(id2label) != num_classes:
        return None
    try:
        names = [str(id2label.get(i, id2label.get(str(i)))) for i in range(num_classes)]
    except (TypeError, ValueError):
        return None
    if any(n == "None" for n in names) or all(_GENERIC_LABEL.fullmatch(n) for n in names):
        return None
    return names


def _count_labels(config: dict[str, Any] | None) -> int | None:
    """How many classes ``config.json`` names (``id2label``, else ``num_labels``)."""
    if config is None:
        return None
    labels = config.get("id2label")
    if isinstance(labels, dict) and labels:
        return len(labels)
    count = config.get("num_labels")
    return count if isinstance(count, int) and not isinstance(count, bool) and count > 0 else None


def _not_a_folder(name: str) -> str:
    """How to save a hub model into a folder on a machine with network access and name it."""
    folder = name.rstrip("/").rsplit("/", 1)[-1] or "model"
    return "\n".join(
        [
            (
                f"huggingface model {name!r}: no such folder (relative paths are relative to the config "
                "file), and lrpcli never downloads models."
            ),
            "  to fix: on a machine with network access, save the model and its processor to a folder:",
            (
                "    python -c \"from transformers import AutoImageProcessor as P, AutoModelForImageClassification as M; "
                f"M.from_pretrained('{name}').save_pretrained('{folder}'); "
                f"P.from_pretrained('{name}').save_pretrained('{folder}')\""
            ),
            f"  (or: huggingface-cli download {name} --local-dir {folder}, if the repository has a {WEIGHTS_NAME}),",
            "  copy the folder here and name it in the config:",
            f"    model: {{huggingface: {folder}}}",
        ]
    )


class HuggingFaceSource(ModelSource):
    """A transformers image classifier in a local ``save_pretrained`` folder (``huggingface: FOLDER``)."""

    key = "huggingface"
    keys = ("huggingface", "classes")
    example = "'huggingface: FOLDER'"

    def parse(self, c: Checker, fields: dict[str, Any], base_dir: Path) -> ModelSpec | None:
        before = len(c.problems)
        raw = c.string(fields["huggingface"], "model.huggingface")
        if not _has_transformers():
            c.error("model.huggingface", f"transformers models need the transformers package: {_INSTALL}")
        folder = (base_dir / Path(raw).expanduser()).resolve() if raw is not None else None
        num_classes: int | None = None
        if folder is not None and folder.is_dir():
            try:  # the same reading as default_preprocess, so that its problems are reported here
                num_classes = _count_labels(_read_json(folder / CONFIG_NAME))
                huggingface_preprocess(folder)
            except ValueError as exc:
                c.error("model.huggingface", f"{exc}; fix the file, or delete it and set preprocess: in the config")
        classes_file, classes = parse_classes(c, fields, base_dir, num_classes)
        if len(c.problems) > before or raw is None or folder is None:
            return None
        weights = folder / WEIGHTS_NAME
        return ModelSpec(
            source=self.key,
            name=str(folder) if folder.is_dir() else raw,
            num_classes=num_classes or 0,
            path=weights if weights.is_file() else None,
            classes_file=classes_file,
            classes=classes,
        )

    def to_config(self, spec: ModelSpec) -> dict[str, Any]:
        return self.with_classes(spec, {"huggingface": spec.name})

    def describe(self, spec: ModelSpec) -> str:
        return f"huggingface {spec.name}"

    def default_preprocess(self, spec: ModelSpec) -> Preprocess:
        folder = Path(spec.name)
        return huggingface_preprocess(folder) if folder.is_dir() else IMAGENET_PREPROCESS

    def load(self, spec: ModelSpec) -> LoadedModel:
        folder = Path(spec.name)
        if not folder.is_dir():
            raise ModelLoadError(_not_a_folder(spec.name))
        for name, what in ((CONFIG_NAME, "the model's configuration"), (WEIGHTS_NAME, "its weights")):
            if not (folder / name).is_file():
                raise ModelLoadError(
                    f"{folder}: no {name} ({what}); lrpcli loads folders written by transformers' "
                    f"save_pretrained (safetensors weights): run model.save_pretrained('{folder.name}') "
                    "with transformers and point the config at that folder"
                )
        if not _has_transformers():
            raise ModelLoadError(f"huggingface model {folder}: the transformers package is not installed: {_INSTALL}")
        model = _from_pretrained(folder)
        num_classes = int(model.config.num_labels)
        if spec.classes is not None and len(spec.classes) != num_classes:
            raise ModelLoadError(
                f"{spec.classes_file}: {len(spec.classes)} class names (one per non-empty line) but the "
                f"model in {folder} has {num_classes} classes"
            )
        classifier = HuggingFaceClassifier.trace(model, spec.input_size)
        spec = replace(spec, num_classes=num_classes)
        weights = folder / WEIGHTS_NAME
        source = (
            f"huggingface {type(model).__name__} from {folder}, weights {weights} "
            f"(sha256 {sha256_file(weights)}), transformers {_transformers_version()}"
        )
        labels = _label_names(getattr(model.config, "id2label", None), num_classes)
        return LoadedModel(classifier, spec, source, categories_for(spec, labels))


def _transformers_version() -> str:
    import transformers

    return str(transformers.__version__)


def _from_pretrained(folder: Path) -> nn.Module:
    """``AutoModelForImageClassification.from_pretrained(folder)`` offline, in float32, with
    scaled-dot-product attention where the model has it (else eager); every weight must be in
    the file. Raises :class:`ModelLoadError`."""
    from transformers import AutoModelForImageClassification
    from transformers.utils import logging as hf_logging

    bar, verbosity = hf_logging.is_progress_bar_enabled(), hf_logging.get_verbosity()
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    try:
        try:
            loaded = AutoModelForImageClassification.from_pretrained(
                folder, local_files_only=True, dtype=torch.float32, attn_implementation="sdpa", output_loading_info=True
            )
        except ValueError:  # no fused attention (ConvNeXt, ResNet): the eager implementation
            loaded = AutoModelForImageClassification.from_pretrained(
                folder, local_files_only=True, dtype=torch.float32, attn_implementation="eager", output_loading_info=True
            )
    except Exception as exc:  # noqa: BLE001 - transformers raises many kinds; all mean "cannot load"
        raise ModelLoadError(
            f"{folder}: transformers cannot load it as an image classifier ({type(exc).__name__}: {exc}); "
            "the folder must hold a *ForImageClassification model saved with save_pretrained, for a model "
            "type this transformers version knows"
        ) from exc
    finally:
        hf_logging.set_verbosity(verbosity)
        if bar:
            hf_logging.enable_progress_bar()
    model, info = loaded
    problems = {k: sorted(str(v) for v in info.get(k) or ()) for k in ("missing_keys", "mismatched_keys")}
    if any(problems.values()):
        text = f"{folder / WEIGHTS_NAME}: the weights do not match the model of {CONFIG_NAME}"
        for key, items in problems.items():
            if items:
                more = f" (+{len(items) - _MAX_LISTED} more)" if len(items) > _MAX_LISTED else ""
                text += f"\n  {key.replace('_', ' ')} ({len(items)}): {', '.join(items[:_MAX_LISTED])}{more}"
        raise ModelLoadError(text + "\n  save the model again with save_pretrained, with the config it was trained with")
    return model
