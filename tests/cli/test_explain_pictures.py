"""``lrp explain``'s picture and report options end to end: --view, --legend, --mode, --scale,
--percentile, --composites (the grid), --ledger, and skipping pictures lrpcli wrote earlier."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import lrp, noise_file, report, write_config

TINY = "model: {embedded: efficientnet_lite0}\npreprocess: {resize: 64, crop: 48}\nrules: epsilon_plus_flat\n"


@pytest.fixture()
def tiny(tmp_path: Path) -> Path:
    return write_config(tmp_path, TINY, "tiny.yaml")


def picture(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def test_view_legend_mode_and_scale(tmp_path: Path, tiny: Path) -> None:
    photo = noise_file(tmp_path / "in" / "photo.png", size=(96, 64))
    full = tmp_path / "full"
    assert lrp("explain", photo, "-c", tiny, "-o", full).exit_code == 0
    entry = report(full)["images"][0]
    assert picture(full / "photo.heatmap.png").shape == (64, 96, 3)  # the whole photo
    # resize 64 → 96 x 64; the 48 x 48 crop is its centre: 24 px either side, 8 above and below
    assert entry["render"]["crop_box"] == [24.0, 8.0, 72.0, 56.0]
    assert entry["render"]["view"] == "full" and entry["render"]["scale"] == "99th percentile of |R|"

    crop = tmp_path / "crop"
    args = ("--view", "crop", "--legend", "--mode", "positive", "--percentile", "90", "--smooth", "0")
    assert lrp("explain", photo, "-c", tiny, "-o", crop, *args).exit_code == 0
    entry = report(crop)["images"][0]
    heatmap = picture(crop / "photo.heatmap.png")
    assert heatmap.shape[1] == 48 and heatmap.shape[0] > 48  # the model's input, plus the legend below
    assert entry["render"] | {"vmax": None} == entry["render"] | {
        "view": "crop", "mode": "positive", "legend": True, "smooth": 0.0, "scale": "90th percentile of |R|", "vmax": None
    }
    body = heatmap[:48].astype(int)
    assert not ((body[..., 2] - body[..., 0] > 40) & (body[..., 2] - body[..., 1] > 40)).any()  # positive: no blue

    top = tmp_path / "max"
    assert lrp("explain", photo, "-c", tiny, "-o", top, "--scale", "max").exit_code == 0
    assert report(top)["images"][0]["render"]["scale"] == "max |R|"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--view", "centre"), "--view 'centre': choose one of full, crop"),
        (("--mode", "sign"), "did you mean 'signed'?"),
        (("--scale", "max", "--percentile", "99"), "--scale max and --percentile cannot be combined"),
        (("--ledger", "all"), "--ledger 'all': choose one of"),
        (("--composites", "epsilon"), "name two or more different composites"),
        (("--composites", "epsilon,epsilon"), "name two or more different composites"),
        (("--composites", "config,epsilon_plus_flt"), "did you mean 'epsilon_plus_flat'?"),
        (("--composites", "config,epsilon", "--composite", "epsilon"), "cannot be combined"),
    ],
)
def test_option_usage_errors(tmp_path: Path, tiny: Path, args: tuple[str, ...], message: str) -> None:
    photo = noise_file(tmp_path / "p.png")
    result = lrp("explain", photo, "-c", tiny, "-o", tmp_path / "out", *args)
    assert result.exit_code == 2 and message in result.stderr, result.stderr
    assert not (tmp_path / "out").exists()


def test_composites_grid(tmp_path: Path, tiny: Path) -> None:
    photo = noise_file(tmp_path / "photo.png", size=(64, 64))
    out = tmp_path / "out"
    result = lrp("explain", photo, "-c", tiny, "-o", out, "--composites", "epsilon,config,epsilon_gamma_box")
    assert result.exit_code == 0, result.stderr
    doc = report(out)
    entry = doc["images"][0]
    assert doc["run"]["composite"]["name"] == "epsilon"  # the first is the one explained and reported
    assert [c["composite"] for c in entry["compare"]] == ["config", "epsilon_gamma_box"]
    for c in entry["compare"]:
        assert abs(c["relative_closure_error"]) <= 1e-5 and isinstance(c["pixel_share"], float)
    assert entry["outputs"]["compare"] == "photo.compare.png"
    grid = picture(out / "photo.compare.png")
    assert 3.0 < grid.shape[1] / grid.shape[0] < 4.0  # four square panels side by side (three: ~2.5)
    assert doc["run"]["options"]["composites"] == "epsilon,config,epsilon_gamma_box"


def test_ledger_modes_and_their_size(tmp_path: Path, tiny: Path) -> None:
    photo = noise_file(tmp_path / "p.png")
    sizes, steps = {}, {}
    for mode in ("compact", "full", "totals"):
        result = lrp("explain", photo, "-c", tiny, "-o", tmp_path / mode, "--ledger", mode, "--jsonl")
        assert result.exit_code == 0, result.stderr
        line = result.stdout.strip()
        sizes[mode] = len(line.encode())
        ledger = json.loads(line)["ledger"]
        steps[mode] = (len(ledger.get("steps", [])), ledger.get("steps_total"))
        assert report(tmp_path / mode)["run"]["config"]["resolved"]["report"]["ledger"] == mode
    total = steps["full"][0]
    assert total > 40 and steps["compact"] == (5, total) and steps["totals"][0] == 0
    assert sizes["totals"] < sizes["compact"] < sizes["full"] / 4


def test_pictures_lrpcli_wrote_are_skipped_wherever_they_are(tmp_path: Path, tiny: Path) -> None:
    photos = tmp_path / "photos"
    for i in range(3):
        noise_file(photos / f"p{i}.png", seed=i)
    first = tmp_path / "runs" / "first"
    assert lrp("explain", photos, "-c", tiny, "-o", first).exit_code == 0
    renamed = tmp_path / "runs" / "kept" / "renamed.png"  # renamed and moved: still ours
    renamed.parent.mkdir(parents=True)
    (first / "photos" / "p0.overlay.png").rename(renamed)

    again = tmp_path / "again"
    result = lrp("explain", tmp_path / "photos", tmp_path / "runs", "-c", tiny, "-o", again)
    assert result.exit_code == 0, result.stderr
    assert "skipped 6 picture(s) lrpcli wrote earlier" in result.stderr
    assert sorted(Path(e["input"]).name for e in report(again)["images"]) == ["p0.png", "p1.png", "p2.png"]

    named = tmp_path / "named"
    assert lrp("explain", renamed, "-c", tiny, "-o", named).exit_code == 0  # named explicitly: explained
    assert [Path(e["input"]).name for e in report(named)["images"]] == ["renamed.png"]
