"""Precision "auto": which images are recomputed in float64, that their ledgers then
close, that the redo matches a float64 computation, and that reports and the console say so."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import pytest
import torch
from conftest import calibrated, make_images
from rich.console import Console
from torch import nn

from lrpcli import Explainer
from lrpcli.cli.explain_output import float64_words, log_entry, log_summary
from lrpcli.core import rules
from lrpcli.io.preprocess import Preprocess
from lrpcli.run.entries import ImageEntry
from lrpcli.run.outputs import plan_outputs
from lrpcli.run.pipeline import Pipeline, RunSettings
from lrpcli.run.report import ReportWriter


@pytest.fixture(scope="module")
def mobilenet() -> tuple[nn.Module, torch.Tensor]:
    """MobileNetV2 (depthwise convolutions: the float64 redo runs them as shifted products)."""
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    return calibrated("mobilenet_v2", size=32), x


def _max_dev(a: torch.Tensor, b: torch.Tensor) -> list[float]:
    """Per image: max|a − b| / max|b|."""
    return ((a - b).flatten(1).abs().amax(1) / b.flatten(1).abs().amax(1)).tolist()


def test_only_the_images_that_miss_the_tolerance_are_redone_wholly_in_float64(mobilenet) -> None:
    model, x = mobilenet
    fast = Explainer(model, "epsilon", precision="model")(x)
    err = fast.ledger.relative_error().tolist()
    assert fast.redone == [None, None] and fast.float64_rows == []
    worse = int(err[1] > err[0])
    assert err[worse] > 1.5 * err[1 - worse]  # a tolerance between them: only one image misses it
    tol = math.sqrt(err[0] * err[1])
    auto = Explainer(model, "epsilon", tolerance=tol)(x)
    assert auto.float64_rows == [worse]
    redo = auto.redone[worse]
    assert redo is not None
    assert redo.float32_error == pytest.approx(err[worse])
    assert auto.ledger.precision[worse] == "float64" and auto.ledger.precision[1 - worse] == "float32"
    assert float(auto.ledger.relative_error().max()) <= tol
    full = Explainer(model, "epsilon", precision="float64")(x)
    torch.testing.assert_close(auto.relevance[worse], full.relevance[worse])  # the float64 answer
    assert torch.equal(auto.relevance[1 - worse], fast.relevance[1 - worse])  # the other image untouched
    assert redo.to_dict() == {
        "float64": "image",
        "float32_error": redo.float32_error,
        "reason": "ledger did not close in float32",
    }


def test_images_that_close_in_float32_are_not_redone() -> None:
    model = calibrated("resnet18", size=32)
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    e = Explainer(model, "epsilon_plus")(x)
    assert e.redone == [None, None] and e.float64_rows == [] and e.ledger.precision == ["float32"] * 2
    assert float(e.ledger.relative_error().max()) <= 1e-5


def _depthwise_model() -> nn.Module:
    """A depthwise convolution with no negative weight and a positive bias after a ReLU: the sum of
    negative contributions of each output is exactly 0, which ``z − p`` gets only up to rounding."""
    torch.manual_seed(0)
    dw = nn.Conv2d(8, 8, 3, padding=1, groups=8)
    with torch.no_grad():
        dw.weight.abs_()
        dw.bias.abs_()
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), dw, nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Linear(8, 3)).eval()  # fmt: skip


@pytest.mark.parametrize("composite", ["epsilon_alpha2_beta1", "epsilon_alpha2_beta1_flat"])
def test_alpha_beta_on_depthwise_layers_closes_in_float32(composite: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """αβ computes p and n of layers with few inputs directly, so float32 needs no float64 redo."""
    model = _depthwise_model()
    x = 3 * torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    full = Explainer(model, composite, precision="float64")(x)
    e = Explainer(model, composite, precision="model")(x)
    assert float(e.ledger.relative_error().max()) <= 1e-5
    assert max(_max_dev(e.relevance, full.relevance)) <= 1e-5
    assert Explainer(model, composite)(x).redone == [None, None]
    # what the shortcut n = z − p did here: off by ~1e-2 of f(x), and a map 5 % off
    monkeypatch.setattr(rules, "_few_inputs", lambda layer: False)
    old = Explainer(model, composite, precision="model")(x)
    assert float(old.ledger.relative_error().min()) > 1e-3
    assert max(_max_dev(old.relevance, full.relevance)) > 1e-2


# --------------------------------------------------------------------------- the run layer

PP = Preprocess(resize=16, crop=16, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))


def _tiny() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(4, 3)).eval()  # fmt: skip


def _run(explainer: Explainer, tmp_path: Path, tolerance: float) -> tuple[list[ImageEntry], dict]:
    inputs = make_images(tmp_path / "imgs", 3)
    out = tmp_path / "out"
    entries: list[ImageEntry] = []
    pipe = Pipeline(explainer, ["a", "b", "c"], RunSettings(preprocess=PP, batch_size=2), out_dir=out)
    pipe.run(inputs, plan_outputs(inputs, out), entries.append)
    with ReportWriter(out / "report.json", {}, inputs=len(inputs), tolerance=tolerance) as writer:
        for entry in entries:
            writer.add(entry)
        summary = writer.write()
    return entries, summary


def test_report_entries_and_summary_say_which_images_were_redone(tmp_path: Path) -> None:
    # float32 ledgers close to ~1e-8 here: a tolerance of 1e-12 makes every image a float64 redo
    entries, summary = _run(Explainer(_tiny(), "epsilon", tolerance=1e-12), tmp_path / "tight", 1e-12)
    assert [e.ok for e in entries] == [True] * 3
    for entry in entries:
        p = entry.result.precision  # type: ignore[union-attr]
        assert p is not None and p["float64"] == "image"
        assert p["float32_error"] > 1e-12 and p["reason"] == "ledger did not close in float32"
        assert entry.result.ledger["precision"] == "float64"  # type: ignore[union-attr]
        assert entry.result.ledger["relative_closure_error"] <= 1e-12  # type: ignore[union-attr]
        data = entry.to_dict()
        assert data["precision"] == p
        assert ImageEntry.from_dict(json.loads(json.dumps(data))).result.precision == p  # type: ignore[union-attr]
    assert summary["float64_redone"] == 3 and "float64_redone_whole" not in summary
    assert summary["closure_check"] == "pass"
    saved = json.loads((tmp_path / "tight" / "out" / "report.json").read_text(encoding="utf-8"))
    assert saved["summary"]["float64_redone"] == 3 and saved["images"][0]["precision"]["float64"] == "image"

    entries, summary = _run(Explainer(_tiny(), "epsilon"), tmp_path / "default", 1e-5)
    assert all(e.result.precision is None and "precision" not in e.to_dict() for e in entries)  # type: ignore[union-attr]
    assert summary["float64_redone"] == 0


def test_older_report_entries_without_precision_read_back() -> None:
    old = {"index": 0, "input": "a.png", "rel": "a.png", "status": "ok", "error": None,
           "target": {"index": 1, "label": "b", "source": "predicted", "probability": 0.5},
           "ledger": {"relative_closure_error": 1e-8}}  # fmt: skip
    entry = ImageEntry.from_dict(old)
    assert entry.result is not None and entry.result.precision is None
    assert "precision" not in entry.to_dict()


def _console() -> tuple[Console, io.StringIO]:
    buffer = io.StringIO()
    return Console(file=buffer, width=400, color_system=None), buffer


def test_console_names_the_float64_redo(tmp_path: Path) -> None:
    entries, summary = _run(Explainer(_tiny(), "epsilon", tolerance=1e-12), tmp_path, 1e-12)
    console, buffer = _console()
    log_entry(console, entries[0], quiet=False)
    line = buffer.getvalue()
    assert "float64 redo (ledger did not close in float32: " in line, line
    log_summary(console, summary, tmp_path / "out", quiet=False)
    text = buffer.getvalue()
    assert "3 of 3 images recomputed in float64: float32 rounding" in text, text
    assert "ledgers from closing within 1e-12" in text
    quiet, buffer = _console()
    log_summary(quiet, summary, tmp_path / "out", quiet=True)
    assert "float64" not in buffer.getvalue()
    redo = {"float64": "image", "float32_error": 3.9e-3, "reason": "ledger did not close in float32"}
    assert float64_words(redo) == "; float64 redo (ledger did not close in float32: 3.9e-03)"
    assert float64_words(None) == ""
