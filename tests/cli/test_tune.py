"""lrp tune end to end: a model with a known most-faithful rule, outputs, errors; the embedded model (slow)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from conftest import lrp, make_images

#: a model whose logit is a sum of pixel contributions: f(x) = Σ_i w_i x_i + b after an identity
#: 1×1 convolution. With inputs normalised by mean 0, std 1 and patches set to pixel 0 (input 0),
#: removing a set of patches lowers f by exactly the sum of their x_i w_i, so ranking patches by
#: x_i w_i (the ε-rule with the bias absorbed) maximises every MoRF prefix: provably the most
#: faithful candidate. Flat/z^B/w² on the identity layer pass relevance through per pixel.
LINEAR_SOURCE = '''\
import torch
from torch import nn


class Additive(nn.Module):
    def __init__(self, size: int = 16) -> None:
        super().__init__()
        self.ident = nn.Conv2d(3, 3, 1, bias=False)
        self.score = nn.Conv2d(3, 2, size)
        with torch.no_grad():
            self.ident.weight.copy_(torch.eye(3).view(3, 3, 1, 1))

    def forward(self, x):
        return self.score(self.ident(x)).flatten(1)
'''

CONFIG = """\
model:
  python: model.py:Additive
  weights: additive.pth
  kwargs: {size: 16}
preprocess: {resize: 16, crop: 16, mean: [0, 0, 0], std: [1, 1, 1]}
rules: epsilon
"""


def write_additive(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.py").write_text(LINEAR_SOURCE, encoding="utf-8")
    namespace: dict = {}
    exec(compile(LINEAR_SOURCE, str(folder / "model.py"), "exec"), namespace)
    torch.manual_seed(0)
    model = namespace["Additive"](16)
    with torch.no_grad():
        model.score.bias.copy_(torch.tensor([0.5, -0.5]))
    torch.save(model.state_dict(), folder / "additive.pth")
    config = folder / "additive.yaml"
    config.write_text(CONFIG, encoding="utf-8")
    return config


def tune(tmp_path: Path, *args: str):
    config = write_additive(tmp_path / "m")
    make_images(tmp_path / "imgs", 6)
    return lrp(
        "tune", tmp_path / "imgs", "--config", config, "--allow-python", tmp_path / "m" / "model.py",
        "--out", tmp_path / "out", "--patch", "4", "--steps", "16", "--perturbation", "zero",
        "--random-runs", "2", *args,
    )  # fmt: skip


def test_tune_finds_the_provably_most_faithful_rule(tmp_path: Path) -> None:
    result = tune(tmp_path, "--space", "small", "--json")
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    winner = doc["winner"]
    assert winner["rules"]["conv"]["rule"] == "epsilon" and winner["rule_options"]["bias"] == "absorb", winner
    rows = {r["name"]: r for r in doc["candidates"]}
    best = max(r["mean"] for r in rows.values() if r["images"] == rows[winner["name"]]["images"])
    assert rows[winner["name"]]["mean"] == pytest.approx(best)
    # what the ε rule ranks by is exactly gradient×input here: the held-out check cannot tell them apart
    held = doc["held_out"]
    assert held["summary"][winner["name"]]["mean"] == pytest.approx(held["summary"]["gradient_x_input"]["mean"], rel=1e-6)
    assert held["comparisons"]["gradient_x_input"]["verdict"] == "not distinguishable"
    assert held["comparisons"]["random"]["mean_diff"] > 0
    assert len(doc["images"]["search"]) == 3 and len(doc["images"]["held_out"]) == 3
    assert not set(doc["images"]["search"]) & set(doc["images"]["held_out"])
    # the written config is a ready config: lrp explain runs with it
    tuned = tmp_path / "out" / "tuned.yaml"
    assert yaml.safe_load(tuned.read_text())["rules"] == winner["rules"]
    assert (tmp_path / "out" / "tune.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    again = lrp("explain", tmp_path / "imgs", "--config", tuned, "--allow-python", tmp_path / "m" / "model.py",
                "--out", tmp_path / "explained", "--json")  # fmt: skip
    assert again.exit_code == 0, again.stderr


def test_tune_is_reproducible_with_a_seed(tmp_path: Path) -> None:
    a = tune(tmp_path, "--space", "small", "--json", "--seed", "3")
    b = lrp("tune", tmp_path / "imgs", "--config", tmp_path / "m" / "additive.yaml", "--allow-python",
            tmp_path / "m" / "model.py", "--out", tmp_path / "out2", "--patch", "4", "--steps", "16",
            "--perturbation", "zero", "--random-runs", "2", "--space", "small", "--json", "--seed", "3")  # fmt: skip
    assert a.exit_code == b.exit_code == 0
    da, db = json.loads(a.stdout), json.loads(b.stdout)
    assert da["candidates"] == db["candidates"] and da["held_out"]["scores"] == db["held_out"]["scores"]


def test_tune_budget_and_pixel_share_constraints(tmp_path: Path) -> None:
    small = tune(tmp_path, "--space", "small", "--budget", "10")
    assert small.exit_code == 2 and "--budget" in small.stderr and "raise --budget" in small.stderr
    strict = lrp("tune", tmp_path / "imgs", "--config", tmp_path / "m" / "additive.yaml", "--allow-python",
                 tmp_path / "m" / "model.py", "--out", tmp_path / "o3", "--patch", "4", "--steps", "16",
                 "--space", "small", "--min-pixel-share", "100")  # fmt: skip
    assert strict.exit_code == 2 and "lower --min-pixel-share" in strict.stderr


def test_tune_refuses_overwrite_and_unknown_score(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "tune.json").write_text("{}")
    clash = tune(tmp_path, "--space", "small")
    assert clash.exit_code == 2 and "--overwrite" in clash.stderr
    bad = tune(tmp_path, "--score", "speed")
    assert bad.exit_code == 2 and "choose one of: aopc, srg" in bad.stderr


@pytest.mark.slow
def test_tune_on_the_embedded_model_over_two_images(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parents[2]
    result = lrp(
        "tune", root / "sample_images" / "coffee.png", root / "sample_images" / "chelsea.png",
        "--out", tmp_path / "out", "--space", "small", "--steps", "20", "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["winner"]["name"] in {r["name"] for r in doc["candidates"]}
    assert len(doc["held_out"]["scores"]["random"]) == 1
    cfg = yaml.safe_load((tmp_path / "out" / "tuned.yaml").read_text())
    assert cfg["model"] == {"embedded": "efficientnet_lite0"} and cfg["rules"] == doc["winner"]["rules"]


def test_tune_with_an_explicit_held_out_set(tmp_path: Path) -> None:
    config = write_additive(tmp_path / "m")
    make_images(tmp_path / "search", 2)
    make_images(tmp_path / "held", 3)
    common = ["--config", config, "--allow-python", tmp_path / "m" / "model.py", "--patch", "4", "--steps", "16",
              "--perturbation", "zero", "--random-runs", "2", "--space", "small", "--json"]  # fmt: skip
    result = lrp("tune", tmp_path / "search", "--held-out", tmp_path / "held", "--out", tmp_path / "o", *common)
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert [Path(p).parent.name for p in doc["images"]["search"]] == ["search"] * 2
    assert [Path(p).parent.name for p in doc["images"]["held_out"]] == ["held"] * 3
    assert doc["settings"]["split"] == "--held-out"
    clash = lrp("tune", tmp_path / "search", "--held-out", tmp_path / "search" / "img00.png", "--out", tmp_path / "o2", *common)
    assert clash.exit_code == 2 and "also search images" in clash.stderr
