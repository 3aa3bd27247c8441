"""Validation of parsed YAML data into a :class:`~lrpcli.config.schema.Config`, section by section."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from lrpcli.config.checker import Checker, join, show
from lrpcli.config.schema import (
    CONFIG_VERSION,
    LEDGER_MODES,
    DEFAULT_BIAS,
    DEFAULT_COVERAGE,
    DEFAULT_EPSILON,
    DEFAULT_GAMMA,
    DEFAULT_STABILIZER,
    DEFAULT_TOLERANCE,
    Config,
    ConfigError,
    ReportSettings,
)
from lrpcli.core.composites import PRESETS, get_composite
from lrpcli.core.rules import AFFINE_RULES, BIAS_TREATMENTS, make_rule, rule_params, stabilizer_spec
from lrpcli.hints import did_you_mean
from lrpcli.io.decode import DEFAULT_MAX_PIXELS
from lrpcli.io.preprocess import RESIZE_MODES, Preprocess
from lrpcli.io.render import MODES, VIEWS, RenderSettings, get_cmap
from lrpcli.models.imagenet import IMAGENET_PREPROCESS
from lrpcli.models.sources import SOURCES, default_preprocess
from lrpcli.models.spec import ModelSpec

__all__ = ["parse_config"]

_TOP_KEYS = ("version", "model", "preprocess", "rules", "rule_options", "render", "report", "input")
_PREPROCESS_KEYS = ("resize", "crop", "mean", "std", "resize_mode")
_OPTION_KEYS = ("epsilon", "gamma", "stabilizer", "low", "high", "bias", "coverage", "ignore_bias")
_RENDER_KEYS = (
    "cmap", "percentile", "overlay_alpha", "mode", "smooth", "opacity_exponent", "contrast", "view",
    "max_side", "legend",
)
_REPORT_KEYS = ("tolerance", "ledger", "ledger_steps")
_INPUT_KEYS = ("max_pixels",)
_BOUND_PARAMS = ("low", "high")


def parse_config(data: Any, *, source: str = "config", base_dir: Path | None = None) -> Config:
    """Validate already-parsed YAML data; raise :class:`ConfigError` listing every problem."""
    base_dir = base_dir or Path.cwd()
    c = Checker()
    if data is None:
        raise ConfigError(source, [("", "the config is empty; it needs at least a 'model' section")])
    top = c.mapping(data, "", _TOP_KEYS)
    if top is None:
        raise ConfigError(source, c.problems)

    if "version" in top:
        version = c.integer(top["version"], "version")
        if version is not None and version != CONFIG_VERSION:
            c.error("version", f"this lrpcli reads config version {CONFIG_VERSION}, got {version}")

    if "model" not in top:
        c.error("model", "missing; e.g. 'model: {embedded: efficientnet_lite0}'")
        model = None
    else:
        model = _parse_model(c, top["model"], base_dir)

    default_pp = _safe_default_preprocess(model)
    pp = _parse_preprocess(c, top.get("preprocess"), default_pp)
    if model is not None and model.source in ("python", "huggingface") and pp is not None:
        model = replace(model, input_size=pp.crop)  # for counting the outputs / tracing at that size
    rules = _parse_rules(c, top.get("rules", "epsilon_plus_flat"))
    opts = _parse_options(c, top.get("rule_options"), pp)
    render = _parse_render(c, top.get("render"))
    report = _parse_report(c, top.get("report"))
    max_pixels = _parse_input(c, top.get("input"))

    if c.problems:
        raise ConfigError(source, c.problems)
    assert model is not None and pp is not None and rules is not None and opts is not None
    assert render is not None and report is not None
    cfg = Config(
        source=source,
        model=model,
        preprocess=pp,
        rules=rules,
        epsilon=opts["epsilon"],
        gamma=opts["gamma"],
        stabilizer=opts["stabilizer"],
        bias=opts["bias"],
        coverage=opts["coverage"],
        low=opts["low"],
        high=opts["high"],
        ignore_bias=opts["ignore_bias"],
        render=render,
        report=report,
        max_pixels=max_pixels,
    )
    try:  # the engine's own check of the whole composite, built once here for every later use
        composite = get_composite(rules, **cfg.composite_options())
    except (ValueError, TypeError) as exc:
        raise ConfigError(source, [("rules", str(exc))]) from None
    return replace(cfg, composite=composite)


def _safe_default_preprocess(model: ModelSpec | None) -> Preprocess:
    if model is None:
        return IMAGENET_PREPROCESS
    try:
        return default_preprocess(model)
    except Exception:  # noqa: BLE001 - only a default; the model section was checked already
        return IMAGENET_PREPROCESS


def _parse_model(c: Checker, value: Any, base_dir: Path) -> ModelSpec | None:
    if isinstance(value, str):
        c.error(
            "model",
            f"expected a mapping such as 'model: {{embedded: {value}}}' or "
            f"'model: {{torchvision: {value}, weights: DEFAULT}}', got {value!r}",
        )
        return None
    if not isinstance(value, Mapping):
        c.error("model", f"expected a mapping naming the model source, got {show(value)}")
        return None
    sources = [s for s in SOURCES if s in value]
    # 'file' names a source of its own and is a key of others ('timm: NAME, file: CHECKPOINT')
    sources = [s for s in sources if not any(s in SOURCES[o].keys for o in sources if o != s)] or sources
    if len(sources) != 1:
        what = "several sources: " + ", ".join(sources) if sources else "no source"
        examples = [source.example for source in SOURCES.values()]
        c.error("model", f"{what}; give exactly one of {', '.join(examples[:-1])} or {examples[-1]}")
        return None
    source = SOURCES[sources[0]]
    fields = c.mapping(value, "model", source.keys)
    if fields is None:
        return None
    return source.parse(c, fields, base_dir)


def _parse_preprocess(c: Checker, value: Any, default: Preprocess) -> Preprocess | None:
    fields = c.mapping(value, "preprocess", _PREPROCESS_KEYS)
    if fields is None:
        return None
    resize = c.integer(fields["resize"], "preprocess.resize") if "resize" in fields else default.resize
    crop = c.integer(fields["crop"], "preprocess.crop") if "crop" in fields else default.crop
    mean = c.triple(fields["mean"], "preprocess.mean") if "mean" in fields else default.mean
    std = c.triple(fields["std"], "preprocess.std", nonzero=True) if "std" in fields else default.std
    mode = c.string(fields["resize_mode"], "preprocess.resize_mode") if "resize_mode" in fields else default.resize_mode
    if mode is not None and mode not in RESIZE_MODES:
        c.error(
            "preprocess.resize_mode",
            f"unknown resize mode {mode!r}{did_you_mean(mode, RESIZE_MODES)}; choose one of: {', '.join(RESIZE_MODES)}",
        )
        mode = None
    if resize is None or crop is None or mean is None or std is None or mode is None:
        return None
    return Preprocess(resize=resize, crop=crop, mean=tuple(mean), std=tuple(std), resize_mode=mode)  # type: ignore[arg-type]


def _parse_rule_spec(c: Checker, value: Any, path: str) -> Any:
    """One selector's rule: a name, or a mapping with ``rule`` and the rule's parameters."""
    choices = sorted(AFFINE_RULES)
    if isinstance(value, str):
        if value not in AFFINE_RULES:
            c.error(path, f"unknown rule {value!r}{did_you_mean(value, choices)}; choose one of: {', '.join(choices)}")
            return None
        return value
    if not isinstance(value, Mapping):
        c.error(path, f"expected a rule name or a mapping with 'rule', got {show(value)}")
        return None
    if "rule" not in value:
        c.error(join(path, "rule"), f"missing; one of: {', '.join(choices)}")
        return None
    name = value["rule"]
    if not isinstance(name, str) or name not in AFFINE_RULES:
        hint = did_you_mean(str(name), choices) if isinstance(name, str) else ""
        c.error(join(path, "rule"), f"unknown rule {name!r}{hint}; choose one of: {', '.join(choices)}")
        return None
    allowed = rule_params(name)
    out: dict[str, Any] = {"rule": name}
    ok = True
    for key, item in value.items():
        if key == "rule":
            continue
        where = join(path, str(key))
        if key not in allowed:
            accepts = ", ".join(allowed) if allowed else "no parameters"
            c.error(where, f"unknown parameter for rule {name!r}; it accepts: {accepts}")
            ok = False
            continue
        if key in _BOUND_PARAMS:
            bound = c.triple(item, where)
            ok = ok and bound is not None
            out[key] = list(bound) if bound is not None else None
        elif key in _SPECIAL_PARAMS:
            parsed = _SPECIAL_PARAMS[key](c, item, where)
            ok = ok and parsed is not None
            out[key] = parsed
        else:
            number = c.number(item, where, minimum=0.0)
            ok = ok and number is not None
            out[key] = number
    if not ok:
        return None
    try:  # value checks of the rule itself (e.g. alpha - beta = 1)
        make_rule(name, **{k: v for k, v in out.items() if k != "rule"})
    except (ValueError, TypeError) as exc:
        c.error(path, str(exc))
        return None
    return out


def _parse_rules(c: Checker, value: Any) -> str | dict[str, Any] | None:
    presets = list(PRESETS)
    if isinstance(value, str):
        if value not in PRESETS:
            c.error("rules", f"unknown preset {value!r}{did_you_mean(value, presets)}; choose one of: {', '.join(presets)}")
            return None
        return value
    if not isinstance(value, Mapping) or not value:
        c.error("rules", f"expected a preset name or a mapping of selectors to rules, got {show(value)}")
        return None
    out: dict[str, Any] = {}
    ok = True
    for key, item in value.items():
        if not isinstance(key, str) or not key:
            c.error("rules", f"selector {key!r} must be text: first, last, a layer type or a layer-name glob")
            ok = False
            continue
        path = f"rules.{key}"
        if key == "preset":
            if not isinstance(item, str) or item not in PRESETS:
                hint = did_you_mean(str(item), presets)
                c.error(path, f"unknown preset {item!r}{hint}; choose one of: {', '.join(presets)}")
                ok = False
            else:
                out[key] = item
            continue
        spec = _parse_rule_spec(c, item, path)
        if spec is None:
            ok = False
        else:
            out[key] = spec
    return out if ok else None


def _epsilon(c: Checker, value: Any, path: str) -> float | str | None:
    """A number >= 0, or a multiple of the layer's pre-activation std such as ``0.25std``."""
    if isinstance(value, str) and value.strip().lower().endswith("std"):
        try:
            factor, _ = stabilizer_spec(value)
        except ValueError as exc:
            c.error(path, str(exc))
            return None
        return f"{factor:g}std"
    return c.number(value, path, minimum=0.0)


def _bias(c: Checker, value: Any, path: str) -> str | None:
    if not isinstance(value, str) or value not in BIAS_TREATMENTS:
        hint = did_you_mean(value, list(BIAS_TREATMENTS)) if isinstance(value, str) else ""
        c.error(path, f"unknown bias treatment {show(value)}{hint}; choose one of: {', '.join(BIAS_TREATMENTS)}")
        return None
    return value


#: rule parameters that are not plain numbers, with their parsers
_SPECIAL_PARAMS: dict[str, Callable[[Checker, Any, str], Any]] = {
    "epsilon": _epsilon,
    "bias": _bias,
    "coverage": lambda c, value, path: c.boolean(value, path),
}


def _parse_options(c: Checker, value: Any, pp: Preprocess | None) -> dict[str, Any] | None:
    fields = c.mapping(value, "rule_options", _OPTION_KEYS)
    if fields is None:
        return None
    out: dict[str, Any] = {
        "epsilon": DEFAULT_EPSILON,
        "gamma": DEFAULT_GAMMA,
        "stabilizer": DEFAULT_STABILIZER,
        "ignore_bias": False,
    }
    ok = True
    for key in ("gamma", "stabilizer"):
        if key in fields:
            number = c.number(fields[key], f"rule_options.{key}", minimum=0.0)
            ok = ok and number is not None
            out[key] = number
    for key, default in (("epsilon", DEFAULT_EPSILON), ("bias", DEFAULT_BIAS), ("coverage", DEFAULT_COVERAGE)):
        out[key] = default
        if key in fields:
            parsed = _SPECIAL_PARAMS[key](c, fields[key], f"rule_options.{key}")
            ok = ok and parsed is not None
            out[key] = parsed
    if "ignore_bias" in fields:
        flag = c.boolean(fields["ignore_bias"], "rule_options.ignore_bias")
        ok = ok and flag is not None
        out["ignore_bias"] = flag
    if pp is not None:  # the values of pixels 0 and 1 after normalisation (pixel_bounds)
        default_low = tuple((0.0 - m) / s for m, s in zip(pp.mean, pp.std))
        default_high = tuple((1.0 - m) / s for m, s in zip(pp.mean, pp.std))
    else:
        default_low, default_high = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
    for key, default in (("low", default_low), ("high", default_high)):
        if key in fields and fields[key] is not None:
            bound = c.triple(fields[key], f"rule_options.{key}")
            ok = ok and bound is not None
            out[key] = bound
        else:
            out[key] = default
    if ok and any(lo > hi for lo, hi in zip(out["low"], out["high"])):
        c.error("rule_options.low", f"low {list(out['low'])} exceeds high {list(out['high'])}")
        ok = False
    return out if ok else None


def _parse_render(c: Checker, value: Any) -> RenderSettings | None:
    fields = c.mapping(value, "render", _RENDER_KEYS)
    if fields is None:
        return None
    found: dict[str, Any] = {}
    ok = True
    if "cmap" in fields:
        cmap = c.string(fields["cmap"], "render.cmap")
        if cmap is not None:
            try:
                get_cmap(cmap)
            except ValueError as exc:
                c.error("render.cmap", str(exc).split(" Valid choices")[0] + "; see matplotlib colour maps (e.g. bwr, seismic, coolwarm, bwr_black)")
                cmap = None
        found["cmap"] = cmap
    if "percentile" in fields:  # null: full colour at max |R|
        found["percentile"] = None
        if fields["percentile"] is not None:
            found["percentile"] = c.number(fields["percentile"], "render.percentile", minimum=0.0, maximum=100.0, exclusive_min=True)
            ok = ok and found["percentile"] is not None
    for key, low, high, exclusive in (
        ("overlay_alpha", 0.0, 1.0, False),
        ("contrast", 0.0, 1.0, False),
        ("smooth", 0.0, 50.0, False),
        ("opacity_exponent", 0.0, 10.0, True),
    ):
        if key in fields:
            found[key] = c.number(fields[key], f"render.{key}", minimum=low, maximum=high, exclusive_min=exclusive)
    for key, choices in (("mode", MODES), ("view", VIEWS)):
        if key in fields:
            name = c.string(fields[key], f"render.{key}")
            if name is not None and name not in choices:
                c.error(f"render.{key}", f"expected one of {', '.join(choices)}, got {name!r}")
                name = None
            found[key] = name
    if "max_side" in fields:
        found["max_side"] = c.integer(fields["max_side"], "render.max_side", minimum=16)
    if "legend" in fields:
        found["legend"] = c.boolean(fields["legend"], "render.legend")
    ok = ok and all(v is not None for k, v in found.items() if k != "percentile")
    return replace(RenderSettings(), **found) if ok else None


def _parse_report(c: Checker, value: Any) -> ReportSettings | None:
    fields = c.mapping(value, "report", _REPORT_KEYS)
    if fields is None:
        return None
    settings = ReportSettings()
    ok = True
    if "tolerance" in fields:
        tol = c.number(fields["tolerance"], "report.tolerance", minimum=0.0, exclusive_min=True)
        ok = ok and tol is not None
        settings = replace(settings, tolerance=tol if tol is not None else DEFAULT_TOLERANCE)
    if "ledger_steps" in fields:  # the older spelling: true = full, false = totals
        flag = c.boolean(fields["ledger_steps"], "report.ledger_steps")
        ok = ok and flag is not None
        settings = replace(settings, ledger="full" if flag else "totals")
    if "ledger" in fields:
        mode = c.string(fields["ledger"], "report.ledger")
        if mode is not None and mode not in LEDGER_MODES:
            c.error("report.ledger", f"expected one of {', '.join(LEDGER_MODES)}, got {mode!r}")
            mode = None
        ok = ok and mode is not None
        settings = replace(settings, ledger=mode or settings.ledger)
    return settings if ok else None


def _parse_input(c: Checker, value: Any) -> int | None:
    fields = c.mapping(value, "input", _INPUT_KEYS)
    if not fields or "max_pixels" not in fields:
        return DEFAULT_MAX_PIXELS
    if fields["max_pixels"] is None:
        return None
    return c.integer(fields["max_pixels"], "input.max_pixels") or DEFAULT_MAX_PIXELS
