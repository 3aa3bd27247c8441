"""What every model source shares: the :class:`ModelSource` interface, the checker it reports
to, and the helpers for weights files, class-name files and class names.

The sources themselves are in :mod:`lrpcli.models.sources` (and, for the optional packages,
:mod:`lrpcli.models.timm_source` and :mod:`lrpcli.models.huggingface_source`), whose ``SOURCES``
table lists them.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar, Protocol

from lrpcli.io.preprocess import Preprocess
from lrpcli.models.imagenet import IMAGENET_PREPROCESS, imagenet_categories
from lrpcli.models.spec import LoadedModel, ModelSpec
from lrpcli.models.weights import WEIGHT_FILE_SUFFIXES

__all__ = ["Checker", "ModelSource", "categories_for", "parse_classes", "weights_file"]


class Checker(Protocol):
    """What a source needs of the config checker (:class:`lrpcli.config.checker.Checker`, which
    passes itself in: models never import config)."""

    problems: list[tuple[str, str]]

    def error(self, path: str, message: str) -> None: ...

    def string(self, value: Any, path: str) -> str | None: ...

    def integer(self, value: Any, path: str, *, minimum: int = 1) -> int | None: ...

    def show(self, value: Any) -> str: ...


class ModelSource(ABC):
    """One kind of ``model:`` section."""

    #: the config key that names this source (also ``ModelSpec.source``)
    key: ClassVar[str]
    #: every key its section may have
    keys: ClassVar[tuple[str, ...]]
    #: how a config names it, for error messages
    example: ClassVar[str]

    @abstractmethod
    def parse(self, c: Checker, fields: dict[str, Any], base_dir: Path) -> ModelSpec | None:
        """The spec of a section whose keys were checked, or ``None`` (problems added to ``c``)."""

    @abstractmethod
    def to_config(self, spec: ModelSpec) -> dict[str, Any]:
        """``spec`` as a ``model:`` section again (paths absolute)."""

    @abstractmethod
    def describe(self, spec: ModelSpec) -> str:
        """A short human description, e.g. ``torchvision resnet50 (IMAGENET1K_V1)``."""

    def default_preprocess(self, spec: ModelSpec) -> Preprocess:
        """The preprocessing the model expects when the config does not set it."""
        return IMAGENET_PREPROCESS

    @abstractmethod
    def load(self, spec: ModelSpec) -> LoadedModel:
        """Build the model with its weights (on the CPU); :class:`ModelLoadError` says what to do."""

    def with_classes(self, spec: ModelSpec, section: dict[str, Any]) -> dict[str, Any]:
        """``section`` plus the ``classes`` file, if the spec has one."""
        if spec.classes_file is not None:
            section["classes"] = str(spec.classes_file)
        return section


def categories_for(spec: ModelSpec, meta: list[str] | None = None) -> list[str]:
    """Class names: the config's file, else the weights' metadata, else ImageNet's or ``class N``."""
    if spec.classes is not None:
        return list(spec.classes)
    if meta is not None and len(meta) == spec.num_classes:
        return list(meta)
    if spec.num_classes == 1000:
        return imagenet_categories()
    return [f"class {i}" for i in range(spec.num_classes)]


def weights_file(c: Checker, value: Any, key: str, base_dir: Path) -> Path | None:
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


def parse_classes(
    c: Checker, fields: dict[str, Any], base_dir: Path, num_classes: int | None
) -> tuple[Path | None, tuple[str, ...] | None]:
    """``model.classes``: a text file of class names, one per non-empty line, as many as classes."""
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
