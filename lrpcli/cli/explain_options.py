"""The options of ``lrp explain`` and their checks: the rendering, ledger and composite options
as config overrides, and ``--target``/``--contrast``/``--targets`` as a target plan. Usage errors
name the option.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lrpcli.cli.errors import EXIT_USAGE, Fail
from lrpcli.cli.loading import preset_name
from lrpcli.cli.options import DeviceChoice
from lrpcli.config.schema import LEDGER_MODES
from lrpcli.hints import did_you_mean
from lrpcli.io.render import MODES, VIEWS, RenderSettings
from lrpcli.run.targets import Pick, TargetPlan, TargetsFileError, class_index, match_targets, read_targets

__all__ = ["ExplainOptions", "composite_list", "parse_pick", "render_overrides", "target_plan"]


@dataclass(frozen=True)
class ExplainOptions:
    """The options of ``lrp explain`` (see its ``--help``)."""

    paths: list[str] = field(default_factory=list)
    config: str | None = None
    out: Path = Path("lrp-out")
    composite: str | None = None
    target: str = "pred"
    contrast: str | None = None  # --contrast B: explain f_target − f_B
    targets_file: Path | None = None  # --targets FILE: a class per image
    layers: list[str] = field(default_factory=list)  # --layer NAME (repeatable)
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


_TOP = re.compile(r"top(\d+)$")
_RANK = re.compile(r"rank(\d+)$")


def parse_pick(text: str, categories: list[str], option: str = "--target") -> tuple[Pick, ...]:
    """``pred`` (rank 1), ``rankN``, ``topK`` (ranks 1..K: one map each), a class index or a
    class name (case-insensitive, unambiguous); usage errors name ``option``."""
    value = text.strip()
    folded = value.lower()
    if folded in ("pred", "predicted", ""):
        return (Pick("rank", 1),)
    for pattern, many in ((_TOP, True), (_RANK, False)):
        m = pattern.match(folded)
        if m:
            k = int(m.group(1))
            if not 1 <= k <= len(categories):
                raise Fail(EXIT_USAGE, f"{option} {value}: choose 1..{len(categories)} (the model has {len(categories)} classes)")
            return tuple(Pick("rank", r) for r in range(1, k + 1)) if many else (Pick("rank", k),)
    try:
        return (Pick("class", class_index(value, categories, option)),)
    except ValueError as exc:
        raise Fail(EXIT_USAGE, f"{exc}; or pred, rankN, topK") from None


def map_count(target: str) -> int:
    """Maps per image that ``--target`` asks for (``topK``: K), before the model is loaded."""
    m = _TOP.match(target.strip().lower())
    return max(1, int(m.group(1))) if m else 1


def target_plan(o: ExplainOptions, categories: list[str], inputs: list[Any]) -> TargetPlan:
    """``--target``, ``--contrast`` and ``--targets FILE`` as a :class:`TargetPlan` (usage errors:
    exit 2); every input must have a row in the targets file."""
    picks = parse_pick(o.target, categories)
    contrast = None
    if o.contrast is not None:
        against = parse_pick(o.contrast, categories, "--contrast")
        if len(against) != 1:
            raise Fail(EXIT_USAGE, f"--contrast {o.contrast}: name one class (an index, a name, pred or rankN)")
        contrast = against[0]
    if o.targets_file is None:
        return TargetPlan(picks, contrast)
    if o.target.strip().lower() not in ("pred", "predicted", ""):
        raise Fail(EXIT_USAGE, "--targets FILE and --target cannot be combined: the file names each image's class")
    try:
        rows = read_targets(o.targets_file, categories)
    except TargetsFileError as exc:
        raise Fail(EXIT_USAGE, str(exc)) from None
    found, missing = match_targets(rows, o.targets_file, inputs)
    if missing:
        shown = ", ".join(item.path.as_posix() for item in missing[:3])
        more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        raise Fail(
            EXIT_USAGE,
            f"--targets {o.targets_file}: no row for {len(missing)} of {len(inputs)} images ({shown}{more}); "
            "add a 'path,class' row for each (paths relative to the file, or file names)",
        )
    return TargetPlan((Pick("file"),), contrast, found, o.targets_file.as_posix())
