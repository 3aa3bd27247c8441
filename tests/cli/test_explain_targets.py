"""What ``lrp explain`` explains (issue #17, items 4 and 5): ``--target topK``/``rankN``,
``--contrast``, ``--targets FILE`` and ``--layer``, checked against single-target runs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import lrp, noise_file, report, write_config

from lrpcli.cli import explain_options
from lrpcli.cli.errors import Fail
from lrpcli.run.targets import Pick

CONFIG = """\
model: {torchvision: resnet18, weights: none}
preprocess: {resize: 40, crop: 32}
rules: epsilon_plus_flat
"""


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("targets")
    photos = root / "photos"
    for i in range(3):
        noise_file(photos / f"img{i}.png", size=(48, 40), seed=i)
    return write_config(root, CONFIG), photos


def explain(config: Path, *args: Any, code: int = 0) -> Any:
    result = lrp("explain", *args, "-c", config, "--save-npy", "-q")
    assert result.exit_code == code, result.stderr
    return result


def npy(out: Path, entry: dict[str, Any], key: str = "relevance") -> np.ndarray:
    """The ``.npy`` output ``key`` of a report entry (or of one of its ``more`` maps)."""
    return np.load(out / entry["outputs"][key])


def entries(out: Path) -> dict[str, dict[str, Any]]:
    return {Path(e["input"]).name: e for e in report(out)["images"]}


def test_top3_gives_one_map_per_class_equal_to_single_runs(setup, tmp_path: Path) -> None:
    config, photos = setup
    out = tmp_path / "top3"
    explain(config, photos, "--target", "top3", "-o", out)
    got = entries(out)
    for k, rank in ((1, "rank1"), (2, "rank2"), (3, "rank3")):
        single = tmp_path / rank
        explain(config, photos, "--target", rank, "-o", single)
        alone = entries(single)
        for name, e in got.items():
            suffix = "" if k == 1 else f".top{k}"
            mine = e if k == 1 else e["more"][k - 2]
            assert mine["target"]["index"] == e["top_k"][k - 1]["index"]
            assert mine["target"]["source"] == ("predicted" if k == 1 else f"rank {k}")
            assert mine["target"] == alone[name]["target"]
            assert mine["outputs"]["heatmap"] == f"photos/{Path(name).stem}{suffix}.heatmap.png"
            assert (out / mine["outputs"]["overlay"]).is_file()
            np.testing.assert_allclose(npy(out, mine), npy(single, alone[name]), rtol=1e-5, atol=1e-7)
            assert mine["f_x"] == pytest.approx(alone[name]["f_x"], rel=1e-6)
    assert report(out)["run"]["targets"]["maps"] == ["predicted", "rank 2", "rank 3"]


def test_contrast_map_is_the_difference_of_the_two_maps(setup, tmp_path: Path) -> None:
    config, photos = setup
    runs = {}
    for name, args in (("both", ["--target", "7", "--contrast", "rank2"]), ("a", ["--target", "7"])):
        runs[name] = tmp_path / name
        explain(config, photos, *args, "-o", runs[name])
    both = entries(runs["both"])
    for name, e in both.items():
        b = e["contrast"]["index"]
        assert e["contrast"]["source"] == "rank 2" and b == e["top_k"][1]["index"]
        assert e["target"]["index"] == 7
        single = tmp_path / f"b-{name}"
        explain(config, photos / name, "--target", str(b), "-o", single)
        diff = npy(runs["a"], entries(runs["a"])[name]) - npy(single, entries(single)[name])
        got = npy(runs["both"], e)
        np.testing.assert_allclose(got, diff, rtol=1e-4, atol=1e-6 * float(np.abs(diff).max()))
        assert e["f_x"] == pytest.approx(e["target"]["logit"] - e["contrast"]["logit"], rel=1e-6)
        assert e["ledger"]["relative_closure_error"] <= 1e-5
    run = report(runs["both"])["run"]
    assert run["targets"]["definition"].startswith("f_target - f_contrast")
    assert run["options"]["contrast"] == "rank2"


def test_contrast_with_the_same_class_warns_and_draws_nothing(setup, tmp_path: Path) -> None:
    config, photos = setup
    out = tmp_path / "same"
    result = lrp("explain", photos / "img0.png", "-c", config, "--contrast", "pred", "--save-npy", "-o", out)
    assert result.exit_code == 0, result.stderr
    assert "target and contrast are the same class" in result.stderr
    assert np.abs(npy(out, entries(out)["img0.png"])).max() == 0


@pytest.mark.parametrize("kind", ["csv", "jsonl"])
def test_targets_file_explains_each_images_class_and_reports_the_prediction(setup, tmp_path: Path, kind: str) -> None:
    config, photos = setup
    wanted = {"img0.png": 281, "img1.png": 7, "img2.png": 954}
    if kind == "csv":  # a header, names and indexes, paths relative to the file's folder
        rows = ["path,label", "photos/img0.png,tabby", "photos/img1.png,7", "img2.png,banana"]
        targets = write_config(photos.parent, "\n".join(rows) + "\n", name="labels.csv")
    else:
        rows = [json.dumps({"path": str(photos / n), "target": t}) for n, t in wanted.items()]
        targets = write_config(tmp_path, "\n".join(rows) + "\n", name="labels.jsonl")
    out = tmp_path / kind
    explain(config, photos, "--targets", targets, "-o", out)
    got = entries(out)
    for name, index in wanted.items():
        e = got[name]
        assert e["target"]["index"] == index
        assert e["target"]["source"] == "targets file"
        assert e["predicted"] == e["top_k"][0]
        single = tmp_path / f"{kind}-{name}"
        explain(config, photos / name, "--target", str(index), "-o", single)
        np.testing.assert_allclose(npy(out, e), npy(single, entries(single)[name]), rtol=1e-5, atol=1e-7)
    assert report(out)["run"]["targets"]["from_file"] == 3


def test_targets_file_errors_are_usage_errors_with_the_line(setup, tmp_path: Path) -> None:
    config, photos = setup
    bad = write_config(tmp_path, "img0.png,tabby\nimg1.png,not a class\n", name="bad.csv")
    result = explain(config, photos, "--targets", bad, "-o", tmp_path / "o1", code=2)
    assert "bad.csv:2" in result.stderr and "no class with that name" in result.stderr
    partial = write_config(tmp_path, "img0.png,1\n", name="partial.csv")
    result = explain(config, photos, "--targets", partial, "-o", tmp_path / "o2", code=2)
    assert "no row for 2 of 3 images" in result.stderr
    result = explain(config, photos, "--targets", partial, "--target", "3", "-o", tmp_path / "o3", code=2)
    assert "cannot be combined" in result.stderr
    assert not (tmp_path / "o1").exists()


def test_layer_saves_the_relevance_arriving_there_and_its_top_channels(setup, tmp_path: Path) -> None:
    config, photos = setup
    out = tmp_path / "layer"
    explain(config, photos / "img0.png", "--layer", "layer2", "--layer", "layer4.1.conv2", "-k", "3", "-o", out)
    e = entries(out)["img0.png"]
    arr = npy(out, e, "layer:layer2")
    assert arr.shape == (128, 4, 4)
    assert e["outputs"]["layer:layer2"] == "img0.layer-layer2.npy"
    summary = {item["layer"]: item for item in e["layers"]}
    l2 = summary["layer2"]
    assert l2["shape"] == [128, 4, 4] and l2["channel_axis"] == 0
    per_channel = arr.reshape(128, -1).sum(1, dtype=np.float64)
    assert l2["sum"] == pytest.approx(per_channel.sum(), rel=1e-5)
    assert [c["channel"] for c in l2["top_channels"]] == list(np.argsort(per_channel)[::-1][:3])
    assert [c["channel"] for c in l2["bottom_channels"]] == list(np.argsort(per_channel)[:3])
    assert l2["share_of_f_x"] == pytest.approx(l2["sum"] / e["f_x"])
    assert l2["positive"] + l2["negative"] == pytest.approx(l2["sum"])
    assert npy(out, e, "layer:layer4.1.conv2").shape == (512, 1, 1)


def test_unknown_layer_is_a_usage_error_that_suggests(setup, tmp_path: Path) -> None:
    config, photos = setup
    result = explain(config, photos, "--layer", "layr2", "-o", tmp_path / "o", code=2)
    assert "did you mean 'layer2'" in result.stderr


def test_resume_refuses_other_targets(setup, tmp_path: Path) -> None:
    config, photos = setup
    out = tmp_path / "r"
    explain(config, photos, "--contrast", "3", "-o", out)
    result = explain(config, photos, "--contrast", "4", "-o", out, "--resume", code=2)
    assert "--contrast '3' (now '4')" in result.stderr
    again = explain(config, photos, "--contrast", "3", "-o", out, "--resume")
    assert report(out)["summary"]["reused"] == 3, again.stderr


def test_parse_pick() -> None:
    from lrpcli.models import imagenet_categories

    categories = imagenet_categories()
    assert explain_options.parse_pick("pred", categories) == (Pick("rank", 1),)
    assert explain_options.parse_pick("top3", categories) == (Pick("rank", 1), Pick("rank", 2), Pick("rank", 3))
    assert explain_options.parse_pick("rank2", categories) == (Pick("rank", 2),)
    assert explain_options.parse_pick("967", categories) == (Pick("class", 967),)
    assert explain_options.parse_pick("ESPRESSO", categories) == (Pick("class", 967),)
    assert explain_options.parse_pick("Cardigan", categories) == (Pick("class", 264),)  # exact case wins (the dog)
    assert explain_options.parse_pick("cardigan", categories) == (Pick("class", 474),)  # (the sweater)
    with pytest.raises(Fail, match="did you mean 'espresso'"):
        explain_options.parse_pick("espreso", categories)
    with pytest.raises(Fail, match="choose 1..1000"):
        explain_options.parse_pick("top0", categories)
    assert explain_options.map_count("top4") == 4 and explain_options.map_count("281") == 1


def test_merged_shards_name_every_maps_files_from_the_merged_folder(setup, tmp_path: Path) -> None:
    config, photos = setup
    out = tmp_path / "merged"
    for k in (1, 2):
        explain(config, photos, "--target", "top2", "--layer", "layer1", "--shard", f"{k}/2", "-o", out / f"s{k}")
    result = lrp("merge", out / "s1", out / "s2", "--out", out)
    assert result.exit_code == 0, result.stderr
    images = report(out)["images"]
    assert len(images) == 3
    for e in images:
        for outputs in (e["outputs"], e["more"][0]["outputs"]):
            assert outputs["heatmap"].startswith(("s1/", "s2/"))
            for path in outputs.values():
                assert (out / path).is_file(), path


def test_the_gallery_shows_every_map_with_its_contrast(setup, tmp_path: Path) -> None:
    import re

    config, photos = setup
    out = tmp_path / "gallery"
    explain(config, photos, "--target", "top2", "--contrast", "5", "--html", "-o", out)
    html = (out / "index.html").read_text(encoding="utf-8")
    data = json.loads(re.search(r'<script type="application/json" id="data">(.*?)</script>', html, re.DOTALL).group(1))
    rows = data["images"]
    assert len(rows) == 6 and data["unit"] == " maps"
    by_image = entries(out)
    for first, second in zip(rows[::2], rows[1::2]):
        e = by_image[Path(first["name"]).name]
        assert first["name"] == second["name"]
        assert first["cls"] == f"{e['target']['label']} rather than {e['contrast']['label']}"
        assert second["cls"] == f"{e['more'][0]['target']['label']} rather than {e['more'][0]['contrast']['label']}"
        assert second["over"] == e["more"][0]["outputs"]["overlay"] and (out / second["over"]).is_file()
