"""The options of ``lrp explain`` and their checks: the rendering, ledger and composite options
as config overrides, and ``--target`` as a class index. Usage errors name the option.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lrpcli.cli.errors import EXIT_USAGE, Fail
from lrpcli.cli.loading import preset_name
from lrpcli.cli.options import DeviceChoice
from lrpcli.config.schema import LEDGER_MODES
from lrpcli.hints import did_you_mean
from lrpcli.io.render import MODES, VIEWS, RenderSettings

__all__ = ["ExplainOptions", "composite_list", "parse_target", "render_overrides"]


@dataclass(frozen=True)
class ExplainOptions:
    """The options of ``lrp explain`` (see its ``--help``)."""

    paths: list[str] = field(default_factory=list)
    config: str | None = None
    out: Path = Path("lrp-out")
    composite: str | None = None
    target: str = "pred"
    top_k: int = 5
    batch_size: int = 8
    workers: int = 2
    device: DeviceChoice = DeviceChoice.auto
    json_out: bool = False
    jsonl_out: bool = False
    quiet: bool = False
    overwrite: bool = False
    fail_fast: bool = False
    null: bool = False
    save_npy: bool = False
    cmap: str | None = None
    max_pixels: int | None = None
    resume: bool = False
    allow_python: list[Path] = field(default_factory=list)
    seed: int | None = None
    view: str | None = None
    scale: str | None = None
    percentile: float | None = None
    mode: str | None = None
    legend: bool = False
    html: bool = False  # --html: index.html, the run's gallery (lrpcli.audit.gallery)
    smooth: float | None = None
    composites: str | None = None
    ledger: str | None = None
    shard: str | None = None  # --shard K/N | auto | auto/N (lrpcli.run.shards)
    backend: str = "local"  # --backend local|ray
    ray_address: str | None = None


_CHOICES: dict[str, tuple[str, ...]] = {
    "view": VIEWS,
    "scale": ("percentile", "max"),
    "mode": MODES,
    "ledger": LEDGER_MODES,
}


def _choice(option: str, value: str | None) -> str | None:
    """``value`` if it is one of the option's choices (case-insensitive); else a usage error."""
    if value is None:
        return None
    choices = _CHOICES[option]
    folded = value.strip().lower()
    if folded not in choices:
        raise Fail(EXIT_USAGE, f"--{option} {value!r}: choose one of {', '.join(choices)}{did_you_mean(folded, choices)}")
    return folded


def render_overrides(o: ExplainOptions) -> dict[str, Any]:
    """The config keys the rendering options override (checked: usage errors name the option)."""
    out: dict[str, Any] = {}
    for option in ("view", "mode"):
        value = _choice(option, getattr(o, option))
        if value is not None:
            out[f"render.{option}"] = value
    scale = _choice("scale", o.scale)
    if scale == "max":
        if o.percentile is not None:
            raise Fail(EXIT_USAGE, "--scale max and --percentile cannot be combined; choose one")
        out["render.percentile"] = None
    elif o.percentile is not None:
        out["render.percentile"] = o.percentile
    elif scale == "percentile":
        out["render.percentile"] = RenderSettings().percentile
    if o.smooth is not None:
        out["render.smooth"] = o.smooth
    if o.legend:
        out["render.legend"] = True
    ledger = _choice("ledger", o.ledger)
    if ledger is not None:
        out["report.ledger"] = ledger
    return out


def composite_list(text: str | None) -> list[str]:
    """``--composites a,b,c``: preset names or ``config``, at least two, no repeats."""
    if text is None:
        return []
    names = [n.strip() for n in text.split(",") if n.strip()]
    for name in names:
        if name != "config":
            preset_name(name, option="--composites")
    if len(names) < 2 or len(set(names)) != len(names):
        raise Fail(
            EXIT_USAGE,
            f"--composites {text!r}: name two or more different composites, e.g. "
            "--composites config,epsilon_plus_flat,epsilon_gamma_box",
        )
    return names


def parse_target(text: str, categories: list[str]) -> int | None:
    """``pred`` → None; an index; or a class name (case-insensitive, unambiguous)."""
    value = text.strip()
    if value.lower() in ("pred", "predicted", ""):
        return None
    n = len(categories)
    if value.lstrip("-").isdigit():
        index = int(value)
        if not 0 <= index < n:
            raise Fail(EXIT_USAGE, f"--target {value}: class index out of range 0..{n - 1}")
        return index
    matches = [i for i, name in enumerate(categories) if name == value]
    if not matches:
        folded = value.casefold()
        matches = [i for i, name in enumerate(categories) if name.casefold() == folded]
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        listed = ", ".join(str(i) for i in matches)
        raise Fail(
            EXIT_USAGE, f"--target {value!r} names several classes ({listed}); give the index instead"
        )
    close = difflib.get_close_matches(value, categories, n=3, cutoff=0.6)
    hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    raise Fail(
        EXIT_USAGE,
        f"--target {value!r}: no class with that name{hint} (use pred, a class index 0..{n - 1}, "
        "or an exact class name)",
    )
