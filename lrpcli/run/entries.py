"""Report entries: one :class:`ImageEntry` per input image, and the header fields of a run record.

An entry is built by the pipeline (:mod:`lrpcli.run.pipeline`), written by the report
(:mod:`lrpcli.run.report`), reused by ``--resume`` (:mod:`lrpcli.run.resume`, through
:meth:`ImageEntry.from_dict`) and printed by the command line. :meth:`ImageEntry.to_dict` gives
the JSON form documented in ``docs/report.md``; ``from_dict(to_dict())`` is the identity.
"""

from __future__ import annotations

import platform
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import torch

from lrpcli import __version__
from lrpcli.config import Config
from lrpcli.models.spec import LoadedModel
from lrpcli.run.allocator import tune_allocator

__all__ = [
    "ImageEntry",
    "Prediction",
    "Result",
    "Target",
    "config_digest",
    "device_name",
    "now",
    "run_header",
    "tool_versions",
]


@dataclass(frozen=True)
class Prediction:
    """One of the top-k classes."""

    index: int
    label: str
    probability: float
    logit: float

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "label": self.label, "probability": self.probability, "logit": self.logit}


@dataclass(frozen=True)
class Target:
    """The explained (or contrasted) class: ``source`` is ``predicted`` (top-1), ``rank N``
    (``--target top3``, ``rankN``), ``requested`` (a class named by ``--target``/``--contrast``)
    or ``targets file`` (``--targets``)."""

    index: int
    label: str
    source: str
    probability: float
    logit: float | None = None

    def to_dict(self) -> dict[str, Any]:
        out = {"index": self.index, "label": self.label, "source": self.source, "probability": self.probability}
        return out if self.logit is None else {**out, "logit": self.logit}


def conservation_shares(ledger: dict[str, Any], error: float) -> dict[str, float | None]:
    """``conservation`` of a result from an image's ledger account: where f(x) went, as fractions."""
    f_x = ledger["f_x"]
    absorbed = ledger["absorbed"]

    def frac(v: float) -> float | None:
        return v / f_x if f_x else None

    return {
        "error": error,
        "relative_error": error / abs(f_x) if f_x else None,
        "pixel_share": frac(ledger["sum_pixels"]),
        "bias_share": frac(absorbed["bias"]),
        "stabilizer_share": frac(absorbed["stabilizer"]),
        "dropped_share": frac(absorbed["dropped"]),
    }


def share_words(conservation: dict[str, Any], of: str = "the logit") -> str:
    """``78 % of the logit reaches the pixels; 22 % went to biases`` — where f(x) went, in words."""
    pixel = conservation.get("pixel_share")
    if not isinstance(pixel, float):
        return "pixel share n/a"
    parts = []
    for key, what in (("bias_share", "biases"), ("stabilizer_share", "stabilisers"), ("dropped_share", "dropped")):
        v = conservation.get(key)
        if isinstance(v, float) and abs(v) >= 0.005:
            parts.append(f"{percent(v)} {'was' if key == 'dropped_share' else 'went to'} {what}")
    rest = f"; {', '.join(parts)} (see ledger)" if parts else ""
    return f"{percent(pixel)} of {of} reaches the pixels{rest}"


def percent(v: float) -> str:
    """A share as a percentage for people: ``78 %``, ``0.04 %``."""
    p = 100.0 * v
    return f"{p:.0f} %" if abs(p) >= 9.5 or p == 0 else f"{p:.2g} %"


@dataclass
class Result:
    """What explaining an image found: predictions, the explained logit, relevance totals, ledger.

    ``relevance``: ``sum`` (ΣR at the pixels), ``positive``, ``negative``; ``conservation``:
    ``error`` (ΣR_pixels − f(x)), ``relative_error``, ``pixel_share`` (ΣR_pixels / f(x)) and the
    shares of f(x) absorbed by biases, stabilisers and dropped (:func:`conservation_shares`);
    ``ledger``: the image's account (:meth:`lrpcli.core.ledger.Accounts.image`).
    """

    image: dict[str, int] | None  # the original size: width, height
    top_k: list[Prediction]
    target: Target
    f_x: float
    relevance: dict[str, float]
    conservation: dict[str, float | None]
    ledger: dict[str, Any]
    compare: list[dict[str, Any]] | None = None  # --composites: the other composites' shares
    #: how the image was recomputed in float64 because its float32 ledger did not close
    #: (:meth:`lrpcli.core.engine.Redo.to_dict`); None: it was not (or an older report)
    precision: dict[str, Any] | None = None
    #: the model's top-1 class (also ``top_k[0]``), beside the explained ``target``
    predicted: Prediction | None = None
    #: --contrast: the class subtracted; ``f_x`` is then f_target − f_contrast
    contrast: Target | None = None
    #: --layer: the relevance arriving at each named module (:func:`lrpcli.run.layers.layer_summary`)
    layers: list[dict[str, Any]] | None = None
    #: --target topK: the second and further maps, each as :meth:`map_dict` plus its ``outputs``
    more: list[dict[str, Any]] | None = None

    def map_dict(self) -> dict[str, Any]:
        """What is particular to this map (not to the image): one item of another map's ``more``."""
        out: dict[str, Any] = {"target": self.target.to_dict()}
        if self.contrast is not None:
            out["contrast"] = self.contrast.to_dict()
        out.update(f_x=self.f_x, relevance=self.relevance, conservation=self.conservation, ledger=self.ledger)
        if self.precision is not None:
            out["precision"] = self.precision
        if self.layers is not None:
            out["layers"] = self.layers
        return out


@dataclass
class ImageEntry:
    """One input's line in the report: where it came from, whether it worked, what it found."""

    index: int
    input: str
    rel: str
    status: str = "ok"
    error: str | None = None
    warnings: list[str] = field(default_factory=list)
    timing: dict[str, float] = field(default_factory=dict)
    result: Result | None = None
    outputs: dict[str, str] = field(default_factory=dict)
    render: dict[str, Any] | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def fail(self, message: str) -> None:
        """Mark the entry failed (what was computed is kept)."""
        self.status, self.error = "error", message

    def to_dict(self) -> dict[str, Any]:
        """The report's JSON object for this image (keys in the documented order)."""
        head: dict[str, Any] = {
            "index": self.index,
            "input": self.input,
            "rel": self.rel,
            "status": self.status,
            "error": self.error,
        }
        r = self.result
        if r is None:
            return {**head, "warnings": list(self.warnings), "timing": dict(self.timing)}
        out = {
            **head,
            "outputs": dict(self.outputs),
            "image": r.image,
            "warnings": list(self.warnings),
            "top_k": [p.to_dict() for p in r.top_k],
            **({"predicted": r.predicted.to_dict()} if r.predicted is not None else {}),
            "target": r.target.to_dict(),
            **({"contrast": r.contrast.to_dict()} if r.contrast is not None else {}),
            "f_x": r.f_x,
            "relevance": r.relevance,
            "conservation": r.conservation,
            "ledger": r.ledger,
            "timing": dict(self.timing),
        }
        if r.compare is not None:
            out["compare"] = r.compare
        if r.precision is not None:
            out["precision"] = r.precision
        if r.layers is not None:
            out["layers"] = r.layers
        if r.more is not None:
            out["more"] = r.more
        if self.render is not None:
            out["render"] = self.render
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ImageEntry:
        """An entry read back from a report (the inverse of :meth:`to_dict`)."""
        result = None
        if "target" in d and "ledger" in d:
            result = Result(
                image=d.get("image"),
                top_k=[Prediction(**p) for p in d.get("top_k") or []],
                target=Target(**d["target"]),
                f_x=d.get("f_x"),  # type: ignore[arg-type]
                relevance=d.get("relevance") or {},
                conservation=d.get("conservation") or {},
                ledger=d["ledger"],
                compare=d.get("compare"),
                precision=d.get("precision"),
                predicted=Prediction(**d["predicted"]) if d.get("predicted") else None,
                contrast=Target(**d["contrast"]) if d.get("contrast") else None,
                layers=d.get("layers"),
                more=d.get("more"),
            )
        return cls(
            index=int(d.get("index", 0)),
            input=str(d.get("input")),
            rel=str(d.get("rel")),
            status=str(d.get("status")),
            error=d.get("error"),
            warnings=list(d.get("warnings") or []),
            timing=dict(d.get("timing") or {}),
            result=result,
            outputs=dict(d.get("outputs") or {}),
            render=d.get("render"),
        )


# --------------------------------------------------------------------------- run header


def now() -> str:
    """The local time with its UTC offset, ISO 8601 to the millisecond."""
    return datetime.now().astimezone().isoformat(timespec="milliseconds")


def tool_versions() -> dict[str, str]:
    """The lrpcli, PyTorch and Python versions, as a run record names them."""
    return {
        "lrpcli_version": __version__,
        "torch_version": torch.__version__,
        "python_version": platform.python_version(),
    }


def device_name(device: torch.device) -> str:
    """The GPU's name, or the CPU's as far as the platform tells."""
    if device.type == "cuda":
        try:
            return torch.cuda.get_device_name(device)
        except Exception:  # noqa: BLE001
            return "cuda"
    return platform.processor() or platform.machine() or "cpu"


def run_header(
    cfg: Config,
    loaded: LoadedModel,
    device: torch.device,
    *,
    started_at: str,
    finished_at: str | None = None,
    duration_s: float | None = None,
) -> dict[str, Any]:
    """The fields that open the ``run`` record of report.json and evaluation.json.

    Versions, times, the device, the model and the resolved preprocessing; each command
    appends its own fields, and :func:`config_digest` for the config.
    """
    spec = loaded.spec
    return {
        **tool_versions(),
        "started_at": started_at,
        "finished_at": finished_at,
        "duration_s": duration_s,
        "device": str(device),
        "device_name": device_name(device),
        "allocator": tune_allocator(),  # what the command did at start (cached)
        "model": {
            "source": spec.source,
            "name": spec.name,
            "weights": spec.weights,
            "weights_source": loaded.weights_source,
            "num_classes": loaded.num_classes,
        },
        "preprocess": cfg.to_dict()["preprocess"],
    }


def config_digest(cfg: Config) -> dict[str, str]:
    """Where the config came from and the SHA-256 of its resolved form."""
    return {"source": cfg.source, "sha256": cfg.digest()}
