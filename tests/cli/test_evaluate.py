"""``lrp evaluate`` end to end: evaluation.json and .png, usage errors, unreadable images."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import SAMPLES, lrp
from lrpcli.evaluation.flipping import (
    BASELINES,
    RANDOM,
)
from lrpcli.config import load_config
from lrpcli.io.decode import load_image
from lrpcli.io.preprocess import preprocess
from lrpcli.models.sources import load_model


TINY_CONFIG = """\
model: {embedded: efficientnet_lite0}
preprocess: {resize: 64, crop: 64}
rules: epsilon_plus_flat
"""


FAST = ("--patch", "8", "--steps", "6", "--random-runs", "2", "--device", "cpu")


@pytest.fixture()
def tiny(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY_CONFIG, encoding="utf-8")
    return path


def test_cli_writes_evaluation_json_and_png(tmp_path: Path, tiny: Path) -> None:
    out = tmp_path / "out"
    result = lrp(
        "evaluate", SAMPLES / "coffee.png", SAMPLES / "chelsea.png", "-c", tiny, *FAST,
        "--composites", "epsilon_plus_flat,epsilon_gamma_box", "--out", out,
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert result.stdout == ""
    names = ["epsilon_plus_flat", "epsilon_gamma_box", "gradient", "gradient_x_input", RANDOM]
    for name in names:
        assert name in result.stderr  # the ranking table
    for header in ("SRG", "MoRF AOPC", "LeRF AOPC", "paired comparisons", "Wilcoxon", "not"):
        assert header in result.stderr
    doc = json.loads((out / "evaluation.json").read_text(encoding="utf-8"))
    assert list(doc) == ["schema_version", "kind", "run", "summary", "images"]
    assert doc["schema_version"] == 2 and doc["kind"] == "lrpcli.evaluation"
    settings = doc["run"]["settings"]
    # both orders by default
    assert (settings["patch"], settings["steps"], settings["perturbation"]) == (8, 6, "uniform")
    assert settings["order"] == "both" and doc["run"]["statistics"]["level"] == 0.95
    assert doc["run"]["grid"]["patches"] == 64 and [e["name"] for e in doc["run"]["explainers"]] == names
    summary = doc["summary"]
    assert (summary["inputs"], summary["evaluated"], summary["failed"], summary["exit_code"]) == (2, 2, 0, 0)
    ranking = summary["ranking"]
    assert sorted(r["explainer"] for r in ranking) == sorted(names) and ranking[0]["rank"] == 1
    # ranked by mean SRG; a rank is shared unless a paired CI separates: 2 images never do
    assert all(r["metric"] == "srg" for r in ranking)
    means = [r["mean"] for r in ranking]
    assert means == sorted(means, reverse=True)
    assert all(r["rank"] == 1 and r["distinguishably_worse_than"] == [] for r in ranking)
    comparisons = summary["comparisons"]
    assert {(c["metric"], c["a"], c["b"]) for c in comparisons} >= {
        ("aopc_morf", "epsilon_plus_flat", RANDOM), ("srg", "epsilon_gamma_box", "gradient_x_input"),
        ("srg", "epsilon_plus_flat", "epsilon_gamma_box"),
    }  # fmt: skip
    for c in comparisons:
        assert c["images"] == 2 and c["ci_low"] <= c["mean_diff"] <= c["ci_high"] and 0 < c["wilcoxon_p"] <= 1
        assert c["verdict"] == "not distinguishable"  # two images are too few for a claim
    assert summary["sanity"] is None
    # the default target is the model's top-1 class on the clean (preprocessed) image
    cfg = load_config(tiny)
    x, _ = preprocess(load_image(SAMPLES / "coffee.png").image, cfg.preprocess)
    with torch.no_grad():
        logits = load_model(cfg.model).module(x[None])[0]
    target = doc["images"][0]["target"]
    assert target["index"] == int(logits.argmax()) and target["logit"] == pytest.approx(float(logits.max()), abs=1e-4)
    for name in names:
        per_image = [img["explainers"][name]["aopc_logit"] for img in doc["images"]]
        stats = summary["explainers"][name]
        assert stats["aopc_logit"]["mean"] == pytest.approx(np.mean(per_image))
        assert stats["aopc_logit"]["se"] == pytest.approx(np.std(per_image, ddof=1) / math.sqrt(2))
        srgs = []
        for img in doc["images"]:
            curve = img["explainers"][name]
            for c in (curve, curve["lerf"]):
                assert len(c["logits"]) == len(c["probabilities"]) == 7
                assert c["logits"][0] == pytest.approx(img["target"]["logit"])
                drops = [c["logits"][0] - v for v in c["logits"]]
                assert c["aopc_logit"] == pytest.approx(np.mean(drops))
            # SRG = mean LeRF logit − mean MoRF logit
            assert curve["srg"] == pytest.approx(np.mean(curve["lerf"]["logits"]) - np.mean(curve["logits"]))
            srgs.append(curve["srg"])
        assert stats["srg"]["mean"] == pytest.approx(np.mean(srgs))
    assert doc["images"][0]["explainers"][RANDOM]["runs"] == 2
    with Image.open(out / "evaluation.png") as png:
        assert png.format == "PNG" and png.size[0] > 800 and png.size[1] > 400


def test_cli_json_prints_one_document_and_default_composite_is_the_configs(tmp_path: Path, tiny: Path) -> None:
    out = tmp_path / "out"
    result = lrp("evaluate", SAMPLES / "rocket.jpg", "-c", tiny, *FAST, "--baselines", "random", "--json", "--out", out)
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)  # fails on anything besides one JSON document
    assert doc == json.loads((out / "evaluation.json").read_text(encoding="utf-8"))
    assert [e["name"] for e in doc["run"]["explainers"]] == ["epsilon_plus_flat", RANDOM]
    assert (out / "evaluation.png").is_file()
    again = lrp("evaluate", SAMPLES / "rocket.jpg", "-c", tiny, *FAST, "--baselines", "random", "--out", out)
    assert again.exit_code == 2 and "--overwrite" in again.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--composites", "epsilon_plus_flt"), "did you mean 'epsilon_plus_flat'?"),
        (("--composites", "epsilon,lrp"), "choose from: epsilon, epsilon_plus, epsilon_plus_flat"),
        (("--baselines", "random,grad"), "choose from: " + ", ".join(BASELINES)),
        (("--steps", "65"), "only 64 patches of 8x8"),
        (("--patch", "65"), "--patch 65"),
        (("--composites", "", "--baselines", ""), "nothing to evaluate"),
        (("--perturbation", "noise"), "noise"),
        (("--order", "up"), "up"),
        (("--shard", "3/2"), "shard 3 of 2 is out of range"),
    ],
)
def test_cli_usage_errors_exit_2_and_write_nothing(tmp_path: Path, tiny: Path, args: tuple[str, ...], message: str) -> None:
    out = tmp_path / "out"
    result = lrp("evaluate", SAMPLES / "coffee.png", "-c", tiny, "--patch", "8", "--out", out, *args)
    assert result.exit_code == 2
    assert message in result.stderr
    assert not out.exists()


def test_cli_unreadable_image_is_reported_and_the_rest_evaluated(tmp_path: Path, tiny: Path) -> None:
    bad = tmp_path / "in" / "bad.png"
    bad.parent.mkdir()
    bad.write_bytes(b"not a png")
    out = tmp_path / "out"
    result = lrp("evaluate", SAMPLES / "coffee.png", bad, "-c", tiny, *FAST, "--out", out)
    assert result.exit_code == 1
    assert "bad.png" in result.stderr
    doc = json.loads((out / "evaluation.json").read_text(encoding="utf-8"))
    assert doc["summary"]["failed"] == 1 and doc["summary"]["evaluated"] == 1
    assert doc["images"][1]["status"] == "error" and "not an image" in doc["images"][1]["error"]
    assert (out / "evaluation.png").is_file()


def test_cli_single_order_occlusion_and_sanity(tmp_path: Path, tiny: Path) -> None:
    out = tmp_path / "out"
    result = lrp(
        "evaluate", SAMPLES / "coffee.png", SAMPLES / "chelsea.png", "-c", tiny, *FAST, "--order", "morf",
        "--baselines", "random,occlusion", "--sanity", "--json", "--out", out,
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["run"]["settings"]["order"] == "morf"
    assert [e["name"] for e in doc["run"]["explainers"]] == ["epsilon_plus_flat", "occlusion", RANDOM]
    summary = doc["summary"]
    assert summary["ranking"][0]["metric"] == "aopc_morf" and "srg" not in summary["explainers"]["occlusion"]
    assert {c["metric"] for c in summary["comparisons"]} == {"aopc_morf"}
    img = doc["images"][0]["explainers"]
    assert "lerf" not in img["occlusion"] and len(img["occlusion"]["logits"]) == 7
    sanity = summary["sanity"]
    assert [lv["name"] for lv in sanity["levels"]] == ["top 1", "top 3", "all"]
    assert sanity["levels"][0]["reinitialised"] == ["classifier"]
    stats = sanity["explainers"]["epsilon_plus_flat"]["all"]
    rhos = [i["sanity"]["epsilon_plus_flat"]["all"] for i in doc["images"]]
    assert stats["mean"] == pytest.approx(np.mean(rhos)) and all(-1 <= r < 0.99 for r in rhos)
    assert "sanity check" in result.stderr and "Spearman" in result.stderr


def test_cli_sanity_needs_an_lrp_explainer(tmp_path: Path, tiny: Path) -> None:
    out = tmp_path / "o"
    result = lrp("evaluate", SAMPLES / "coffee.png", "-c", tiny, *FAST, "--composites", "", "--sanity", "--out", out)
    assert result.exit_code == 2 and "--composites is empty" in result.stderr
    assert not out.exists()


def test_cli_shard_evaluates_only_its_inputs(tmp_path: Path, tiny: Path) -> None:
    from lrpcli.run.shards import shard_of

    out = tmp_path / "out"
    result = lrp("evaluate", SAMPLES, "-c", tiny, *FAST, "--baselines", "random", "--shard", "2/2", "--out", out)
    assert result.exit_code == 0, result.stderr
    doc = json.loads((out / "evaluation.json").read_text(encoding="utf-8"))
    names = sorted(p.name for p in SAMPLES.iterdir() if p.suffix in (".png", ".jpg"))
    mine = [n for n in names if shard_of(f"sample_images/{n}", 2) == 2]
    assert doc["run"]["shard"] == {"index": 2, "count": 2, "inputs": len(mine), "all_inputs": len(names)}
    assert sorted(Path(e["input"]).name for e in doc["images"]) == mine
