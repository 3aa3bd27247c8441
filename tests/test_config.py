"""Tests for lrpcli.config: the shipped configs, YAML validation with key paths, resolution."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from conftest import ROOT, write_config
from lrpcli import get_composite
from lrpcli.config import BUILTIN_CONFIGS, ConfigError, builtin_config_path, load_config
from lrpcli.io.preprocess import pixel_bounds
from lrpcli.io.render import RenderSettings
from lrpcli.models import EFFICIENTNET_LITE_PREPROCESS, IMAGENET_PREPROCESS
from lrpcli.models.spec import ModelSpec


def problems(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(write_config(tmp_path, text))
    return str(info.value)


# --------------------------------------------------------------------------- shipped configs


@pytest.mark.parametrize("name", BUILTIN_CONFIGS)
def test_repo_configs_match_packaged_ones(name: str) -> None:
    repo_file = ROOT / "configs" / f"{name}.yaml"
    assert repo_file.read_bytes() == builtin_config_path(name).read_bytes()


def test_default_config() -> None:
    cfg = load_config()  # no --config: the packaged default
    assert cfg.model == ModelSpec(source="embedded", name="efficientnet_lite0")
    assert cfg.preprocess == EFFICIENTNET_LITE_PREPROCESS
    assert cfg.rules["conv"] == {"rule": "epsilon", "epsilon": "0.25std"} and cfg.rules["first"] == {"rule": "zbox"}
    assert cfg.render == RenderSettings()  # the packaged default spells out the dataclass defaults
    assert cfg.render.cmap == "bwr" and cfg.render.percentile == 99.0 and cfg.render.view == "full"
    assert cfg.report.tolerance == 1e-5
    low, high = pixel_bounds(cfg.preprocess)
    opts = cfg.composite_options()
    torch.testing.assert_close(opts["low"], low)
    torch.testing.assert_close(opts["high"], high)


@pytest.mark.parametrize(
    ("name", "arch", "composite"),
    [("vgg16", "vgg16", "epsilon_gamma_box"), ("resnet50", "resnet50", "epsilon_plus_flat")],
)
def test_torchvision_configs(name: str, arch: str, composite: str) -> None:
    cfg = load_config(ROOT / "configs" / f"{name}.yaml")
    assert cfg.model.source == "torchvision" and cfg.model.name == arch
    assert cfg.model.weights == "IMAGENET1K_V1" and cfg.model.num_classes == 1000
    assert cfg.rules == composite
    assert cfg.preprocess == IMAGENET_PREPROCESS
    assert load_config(name).digest() == cfg.digest()  # built-in name, same content


def test_resolved_config_round_trips(tmp_path: Path) -> None:
    cfg = load_config(ROOT / "configs" / "vgg16.yaml")
    again = load_config(write_config(tmp_path, cfg.to_yaml()))
    assert again.to_dict() == cfg.to_dict()
    assert again.digest() == cfg.digest()
    changed = load_config(ROOT / "configs" / "vgg16.yaml", overrides={"render.cmap": "seismic"})
    assert changed.digest() != cfg.digest()
    assert len(cfg.digest()) == 64


def test_defaults_depend_on_model(tmp_path: Path) -> None:
    cfg = load_config(write_config(tmp_path, "model: {torchvision: resnet50, weights: IMAGENET1K_V2}\n"))
    assert (cfg.preprocess.resize, cfg.preprocess.crop) == (232, 224)  # from the weights' transforms
    assert cfg.preprocess.mean == IMAGENET_PREPROCESS.mean
    cfg = load_config(write_config(tmp_path, "model: {torchvision: resnet18, weights: DEFAULT}\n"))
    assert cfg.model.weights == "IMAGENET1K_V1"  # DEFAULT resolved to the member name
    cfg = load_config(write_config(tmp_path, "model: {torchvision: resnet18, weights: none, num_classes: 7}\n"))
    assert cfg.model.weights is None and cfg.model.num_classes == 7
    assert cfg.to_dict()["model"]["weights"] == "none"


def test_custom_rules_map(tmp_path: Path) -> None:
    text = """
model: {embedded: efficientnet_lite0}
rules:
  preset: epsilon_plus
  first: flat
  conv: {rule: gamma, gamma: 0.5}
  linear: epsilon
  "blocks.1*": {rule: epsilon, epsilon: "1e-3"}
  last: lrp0
rule_options: {epsilon: 0.25}
"""
    cfg = load_config(write_config(tmp_path, text))
    assert cfg.rules["conv"] == {"rule": "gamma", "gamma": 0.5}
    assert cfg.rules["blocks.1*"] == {"rule": "epsilon", "epsilon": 0.001}  # "1e-3" text accepted
    assert cfg.composite_name == "epsilon_plus+custom"
    rules = get_composite(cfg.rules, **cfg.composite_options()).describe()
    assert rules["conv"].startswith("gamma(gamma=0.5")
    assert rules["blocks.1*"].startswith("epsilon(epsilon=0.001")
    assert "lrp0" in rules["last"]


def test_zbox_bounds_default_to_pixel_range(tmp_path: Path) -> None:
    cfg = load_config(write_config(tmp_path, "model: {embedded: efficientnet_lite0}\nrules: {first: zbox, conv: zplus, linear: epsilon}\n"))
    low, high = pixel_bounds(cfg.preprocess)
    assert cfg.low == pytest.approx(low.flatten().tolist(), rel=1e-6)
    assert cfg.high == pytest.approx(high.flatten().tolist(), rel=1e-6)
    cfg = load_config(write_config(tmp_path, "model: {embedded: efficientnet_lite0}\nrule_options: {low: -1, high: [1, 2, 3]}\n"))
    assert cfg.low == (-1.0, -1.0, -1.0) and cfg.high == (1.0, 2.0, 3.0)


# --------------------------------------------------------------------------- validation errors

BASE = "model: {embedded: efficientnet_lite0}\n"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (BASE + "rules: {conv: {rule: gamma, gamma: abc}}\n", "config.yaml: rules.conv.gamma: expected a number, got 'abc'"),
        (BASE + "modle: 1\n", "config.yaml: modle: unknown key (did you mean 'model'?)"),
        ("model: {embedded: effnet}\n", "config.yaml: model.embedded: unknown embedded model 'effnet'"),
        ("model: {torchvision: resnet5}\n", "config.yaml: model.torchvision: unknown torchvision classifier 'resnet5' (did you mean"),
        ("model: {torchvision: resnet50, weights: IMAGENET1K_V9}\n", "config.yaml: model.weights: resnet50 has no weights 'IMAGENET1K_V9'"),
        ("model: {torchvision: vgg16, weights: IMAGENET1K_FEATURES}\n", "config.yaml: model.weights: vgg16 weights IMAGENET1K_FEATURES have no class list"),
        ("model: {torchvision: resnet50, weights: IMAGENET1K_V1, num_classes: 10}\n", "config.yaml: model.num_classes: 10 does not match the 1000 classes"),
        ("model: {embedded: efficientnet_lite0, torchvision: resnet50}\n", "config.yaml: model: several sources: embedded, torchvision"),
        ("model: {embedded: efficientnet_lite0, weights: x}\n", "config.yaml: model.weights: unknown key"),
        ("model: efficientnet_lite0\n", "config.yaml: model: expected a mapping such as 'model: {embedded: efficientnet_lite0}'"),
        ("rules: epsilon\n", "config.yaml: model: missing"),
        ("model: {file: w.pth, num_classes: 3}\n", "config.yaml: model.arch: missing"),
        ("model: {file: w.onnx, arch: resnet18, num_classes: 3}\n", "config.yaml: model.file: 'w.onnx': expected a .pth or .pt or .safetensors weights file"),
        ("model: {file: missing.pth, arch: resnet18, num_classes: 3}\n", "config.yaml: model.file: no such file"),
        ("model: {file: w.pth, arch: resnet18}\n", "config.yaml: model.num_classes: missing"),
        ("model: {file: w.pth, arch: resnet18, num_classes: 0}\n", "config.yaml: model.num_classes: must be >= 1, got 0"),
        ("model: {file: w.pth, arch: resnet19, num_classes: 3}\n", "config.yaml: model.arch: unknown architecture 'resnet19'"),
        ("model: {file: w.pth, arch: resnet18, num_classes: 3, classes: names.txt}\n", "config.yaml: model.classes: names.txt has 2 class names (one per non-empty line) but the model has 3 classes"),
        ("model: {file: w.pth, arch: resnet18, num_classes: 2, classes: nope.txt}\n", "config.yaml: model.classes: no such file"),
        (BASE + "preprocess: {crop: 0}\n", "config.yaml: preprocess.crop: must be >= 1, got 0"),
        (BASE + "preprocess: {resize: 2.5}\n", "config.yaml: preprocess.resize: expected a whole number, got 2.5"),
        (BASE + "preprocess: {mean: [1, 2]}\n", "config.yaml: preprocess.mean: expected 3 values (R, G, B) or one number, got 2 values"),
        (BASE + "preprocess: {mean: [0.5, x, 0.5]}\n", "config.yaml: preprocess.mean[1]: expected a number, got 'x'"),
        (BASE + "preprocess: {std: 0}\n", "config.yaml: preprocess.std: values must be non-zero"),
        (BASE + "preprocess: {size: 3}\n", "config.yaml: preprocess.size: unknown key"),
        (BASE + "rules: epsilon_plus_flatt\n", "config.yaml: rules: unknown preset 'epsilon_plus_flatt' (did you mean 'epsilon_plus_flat'?)"),
        (BASE + "rules: {conv: {rule: gama}}\n", "config.yaml: rules.conv.rule: unknown rule 'gama' (did you mean 'gamma'?)"),
        (BASE + "rules: {conv: {rule: gamma, epsilon: 0.1}}\n", "config.yaml: rules.conv.epsilon: unknown parameter for rule 'gamma'; it accepts: gamma, stabilizer"),
        (BASE + "rules: {first: {gamma: 1}}\n", "config.yaml: rules.first.rule: missing"),
        (BASE + "rules: {conv: zplus, linear: [1]}\n", "config.yaml: rules.linear: expected a rule name or a mapping with 'rule', got a list"),
        (BASE + "rules: {preset: nope}\n", "config.yaml: rules.preset: unknown preset 'nope'"),
        (BASE + "rules: {first: {rule: zbox, low: [0, 0]}}\n", "config.yaml: rules.first.low: expected 3 values"),
        (BASE + "rules: 3\n", "config.yaml: rules: expected a preset name or a mapping"),
        (BASE + "rule_options: {epsilon: -1}\n", "config.yaml: rule_options.epsilon: must be >= 0, got -1"),
        (BASE + "rule_options: {gamma: true}\n", "config.yaml: rule_options.gamma: expected a number, got True"),
        (BASE + "rule_options: {eps: 1}\n", "config.yaml: rule_options.eps: unknown key"),
        (BASE + "rule_options: {ignore_bias: maybe}\n", "config.yaml: rule_options.ignore_bias: expected true or false, got 'maybe'"),
        (BASE + "rule_options: {low: 2, high: 1}\n", "config.yaml: rule_options.low: low [2.0, 2.0, 2.0] exceeds high"),
        (BASE + "render: {cmap: nope}\n", "config.yaml: render.cmap: unknown colour map 'nope'"),
        (BASE + "render: {percentile: 0}\n", "config.yaml: render.percentile: must be > 0, got 0"),
        (BASE + "render: {overlay_alpha: 2}\n", "config.yaml: render.overlay_alpha: must be <= 1, got 2"),
        (BASE + "render: [bwr]\n", "config.yaml: render: expected a mapping with keys cmap, percentile, overlay_alpha, mode, smooth, opacity_exponent, contrast, view, max_side, legend, got a list"),
        (BASE + "report: {tolerance: 0}\n", "config.yaml: report.tolerance: must be > 0, got 0"),
        (BASE + "report: {ledger_steps: maybe}\n", "config.yaml: report.ledger_steps: expected true or false"),
        (BASE + "input: {max_pixels: -5}\n", "config.yaml: input.max_pixels: must be >= 1, got -5"),
        (BASE + "version: 2\n", "config.yaml: version: this lrpcli reads config version 1, got 2"),
        ("model: {embedded: efficientnet_lite0}\nmodel: {embedded: efficientnet_lite0}\n", "config.yaml: line 2, column 1: invalid YAML: duplicate key 'model'"),
        ("model: [unclosed\n", "config.yaml: line 2, column 1: invalid YAML"),
        ("", "config.yaml: the config is empty"),
        ("- a\n- b\n", "config.yaml: expected a mapping with keys version, model"),
        ("model: !!python/object:os.system {}\n", "invalid YAML"),
    ],
)
def test_validation_errors_carry_key_path(tmp_path: Path, text: str, expected: str) -> None:
    (tmp_path / "w.pth").write_bytes(b"")
    (tmp_path / "names.txt").write_text("cat\n\ndog\n", encoding="utf-8")
    message = problems(tmp_path, text)
    assert expected in message, message


def test_all_problems_reported_at_once(tmp_path: Path) -> None:
    message = problems(
        tmp_path, BASE + "render: {cmap: 3, overlay_alpha: x}\nreport: {tolerance: -1}\nextra: 1\n"
    )
    lines = message.splitlines()
    assert len(lines) == 4, message
    prefix = f"{tmp_path / 'config.yaml'}: "
    assert all(line.startswith(prefix) for line in lines)
    paths = {line[len(prefix) :].split(": ")[0] for line in lines}
    assert paths == {"extra", "render.cmap", "render.overlay_alpha", "report.tolerance"}


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such config file"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="is a folder"):
        load_config(tmp_path)


def test_classes_file_and_relative_paths(tmp_path: Path) -> None:
    sub = tmp_path / "conf"
    sub.mkdir()
    (sub / "w.pth").write_bytes(b"x")
    (sub / "names.txt").write_text("cat\ndog\n\nbird\n", encoding="utf-8")
    cfg = load_config(write_config(sub, "model: {file: w.pth, arch: squeezenet1_1, num_classes: 3, classes: names.txt}\n"))
    assert cfg.model.path == (sub / "w.pth").resolve()
    assert cfg.model.classes == ("cat", "dog", "bird")
    assert cfg.preprocess == IMAGENET_PREPROCESS


def test_config_json_safe() -> None:
    json.dumps(load_config().to_dict())
    yaml.safe_load(load_config().to_yaml())


def test_bias_treatment_relative_epsilon_and_coverage(tmp_path: Path) -> None:
    text = """
model: {embedded: efficientnet_lite0}
rules:
  preset: epsilon
  first: {rule: flat, coverage: true}
  conv: {rule: gamma, gamma: 0.1, bias: ignore}
  "blocks.1*": {rule: epsilon, epsilon: 0.5std}
rule_options: {epsilon: 0.25STD, bias: distribute, coverage: false}
"""
    cfg = load_config(write_config(tmp_path, text))
    assert (cfg.epsilon, cfg.bias, cfg.coverage) == ("0.25std", "distribute", False)
    assert cfg.rules["blocks.1*"] == {"rule": "epsilon", "epsilon": "0.5std"}
    rules = cfg.composite.describe()
    assert rules["conv"] == "gamma(gamma=0.1, stabilizer=1e-06, bias=ignore)"
    assert rules["blocks.1*"] == "epsilon(epsilon=0.5std, bias=distribute)"  # rule_options.bias by default
    assert rules["linear"] == "epsilon(epsilon=0.25std, bias=distribute)"
    assert rules["first (conv/linear)"] == "flat(stabilizer=1e-06, coverage=True)"
    again = load_config(write_config(tmp_path, yaml.safe_dump(cfg.to_dict()), name="again.yaml"))
    assert again.to_dict() == cfg.to_dict() and again.composite.describe() == rules


@pytest.mark.parametrize(
    "text, expected",
    [
        ("rule_options: {bias: spread}", "rule_options.bias: unknown bias treatment 'spread'"),
        ("rule_options: {epsilon: 0.25sd}", "rule_options.epsilon: expected a number"),
        ("rule_options: {epsilon: -1std}", "multiple of the std such as '0.25std'"),
        ("rule_options: {coverage: 1}", "rule_options.coverage: expected true or false"),
        ("rules: {conv: {rule: zplus, bias: distribut}}", "rules.conv.bias: unknown bias treatment 'distribut' (did you mean 'distribute'?)"),
        ("rules: {conv: {rule: flat, bias: ignore}}", "rules.conv.bias: unknown parameter for rule 'flat'"),
    ],
)
def test_new_rule_option_errors(tmp_path: Path, text: str, expected: str) -> None:
    assert expected in problems(tmp_path, "model: {embedded: efficientnet_lite0}\n" + text)


def test_default_rules_are_the_recorded_tune_winner() -> None:
    """The default config's rules are what `lrp tune` chose (its tune.json is kept in benchmarks/)."""
    doc = json.loads((ROOT / "benchmarks" / "tune_default.json").read_text(encoding="utf-8"))
    assert doc["kind"] == "lrpcli.tune" and doc["settings"]["seed"] == 0
    cfg = load_config()
    assert cfg.rules == doc["winner"]["rules"]
    assert cfg.bias == doc["winner"]["rule_options"]["bias"]


def test_digest_covers_the_bytes_of_the_weights_and_model_files(tmp_path: Path) -> None:
    """Same paths, other bytes: another digest (so --resume and lrp merge refuse the mix)."""
    import os

    from conftest import write_tiny_model

    config = write_tiny_model(tmp_path / "m")
    first = load_config(config)
    assert set(first.file_digests()) == {"weights", "python"}
    digest = first.digest()
    assert load_config(config).digest() == digest
    write_tiny_model(tmp_path / "m", seed=1)  # other weights, same file name
    os.utime(tmp_path / "m" / "tiny.pth", ns=(1, 1))  # the cache key sees the change even within a second
    retrained = load_config(config).digest()
    assert retrained != digest
    code = tmp_path / "m" / "model.py"
    code.write_text(code.read_text(encoding="utf-8") + "\n# edited\n", encoding="utf-8")
    assert load_config(config).digest() not in (digest, retrained)
