"""Tests for lrpcli.run.entries: typed report entries and their JSON form."""

from __future__ import annotations

import json

import pytest

from lrpcli.run.entries import ImageEntry, Prediction, Result, Target, now, tool_versions


def explained(index: int = 0) -> ImageEntry:
    result = Result(
        image={"width": 30, "height": 20},
        top_k=[Prediction(2, "cherry", 0.7, 1.5), Prediction(0, "apple", 0.2, 0.25)],
        target=Target(2, "cherry", "predicted", 0.7),
        f_x=1.5,
        relevance={"sum": 1.0, "positive": 1.25, "negative": -0.25},
        conservation={"error": -0.5, "relative_error": -1 / 3},
        ledger={"f_x": 1.5, "sum_pixels": 1.0, "relative_closure_error": 1e-8},
    )
    return ImageEntry(index, "in/a.png", "in/a.png", timing={"load_s": 0.1, "explain_s": 0.2}, result=result)


def test_an_explained_entry_has_the_documented_keys_in_order() -> None:
    entry = explained()
    entry.outputs = {"heatmap": "in/a.heatmap.png", "overlay": "in/a.overlay.png"}
    entry.render = {"cmap": "bwr", "vmax": 1.0, "scale": "max |R|"}
    d = entry.to_dict()
    assert list(d) == [
        "index", "input", "rel", "status", "error", "outputs", "image", "warnings", "top_k", "target", "f_x",
        "relevance", "conservation", "ledger", "timing", "render",
    ]  # fmt: skip
    assert d["top_k"][0] == {"index": 2, "label": "cherry", "probability": 0.7, "logit": 1.5}
    assert d["target"] == {"index": 2, "label": "cherry", "source": "predicted", "probability": 0.7}
    assert entry.ok


def test_a_load_failure_has_only_what_is_known() -> None:
    entry = ImageEntry(3, "x.png", "x.png", status="error", error="not an image", timing={"load_s": 0.0})
    assert entry.to_dict() == {
        "index": 3, "input": "x.png", "rel": "x.png", "status": "error", "error": "not an image",
        "warnings": [], "timing": {"load_s": 0.0},
    }  # fmt: skip
    assert not entry.ok


def test_a_failed_write_keeps_the_explanation_and_has_no_render() -> None:
    entry = explained()
    entry.fail("cannot write outputs: OSError: disk full")
    d = entry.to_dict()
    assert d["status"] == "error" and d["error"].startswith("cannot write outputs")
    assert "render" not in d and d["outputs"] == {} and d["f_x"] == 1.5


@pytest.mark.parametrize("kind", ["explained", "written", "failed load", "failed write"])
def test_from_dict_inverts_to_dict_through_json(kind: str) -> None:
    if kind == "failed load":
        entry = ImageEntry(1, "b.png", "b.png", status="error", error="empty file", warnings=["w"])
    else:
        entry = explained(1)
        if kind == "written":
            entry.outputs = {"heatmap": "b.heatmap.png", "overlay": "b.overlay.png"}
            entry.render = {"cmap": "bwr", "vmax": 2.0, "scale": "max |R|"}
        if kind == "failed write":
            entry.fail("cannot write outputs: boom")
    text = json.dumps(entry.to_dict())
    again = ImageEntry.from_dict(json.loads(text))
    assert json.dumps(again.to_dict()) == text
    assert again == entry


def test_run_header_helpers() -> None:
    versions = tool_versions()
    assert set(versions) == {"lrpcli_version", "torch_version", "python_version"}
    stamp = now()
    assert stamp[4] == "-" and "T" in stamp and ("+" in stamp[19:] or "-" in stamp[19:])


def test_conservation_shares_in_words() -> None:
    from lrpcli.run.entries import conservation_shares, percent, share_words

    ledger = {"f_x": 4.0, "sum_pixels": 3.12, "absorbed": {"bias": 0.88, "stabilizer": 0.0, "dropped": 0.0}}
    cons = conservation_shares(ledger, -0.88)
    assert cons["pixel_share"] == pytest.approx(0.78) and cons["bias_share"] == pytest.approx(0.22)
    assert share_words(cons) == "78 % of the logit reaches the pixels; 22 % went to biases (see ledger)"
    tiny = conservation_shares({"f_x": 10.0, "sum_pixels": 0.004, "absorbed": {"bias": 0.0, "stabilizer": 9.996, "dropped": 0.0}}, 0.0)
    assert share_words(tiny) == "0.04 % of the logit reaches the pixels; 100 % went to stabilisers (see ledger)"
    assert percent(0.0) == "0 %" and percent(1.0) == "100 %"
    assert conservation_shares({"f_x": 0.0, "sum_pixels": 0.0, "absorbed": {"bias": 0, "stabilizer": 0, "dropped": 0}}, 0.0)["pixel_share"] is None
