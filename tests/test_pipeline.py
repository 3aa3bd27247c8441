"""Tests for lrpcli.run.pipeline: the overlapped batch loop."""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from conftest import make_images
from lrpcli import Explainer
from lrpcli.io.inputs import ImageInput
from lrpcli.io.preprocess import Preprocess
from lrpcli.io.render import RenderSettings
from lrpcli.run.outputs import plan_outputs
from lrpcli.run.entries import ImageEntry
from lrpcli.run.targets import Pick, TargetPlan
from lrpcli.run.pipeline import Pipeline, RunSettings, _Emitter

PP = Preprocess(resize=16, crop=16, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
CATEGORIES = ["apple", "banana", "cherry"]


@pytest.fixture(scope="module")
def explainer() -> Explainer:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, 3),
    ).eval()
    return Explainer(model, "epsilon")




def run(
    explainer: Any,
    inputs: list[ImageInput],
    out: Path,
    stop: threading.Event | None = None,
    **settings: Any,
) -> tuple[list[dict[str, Any]], Any]:
    plans = plan_outputs(inputs, out, save_npy=settings.pop("save_npy", False))
    entries: list[dict[str, Any]] = []
    pipe = Pipeline(explainer, CATEGORIES, RunSettings(preprocess=PP, **settings), out_dir=out)
    outcome = pipe.run(inputs, plans, lambda e: entries.append(e.to_dict()), stop)
    return entries, outcome


def leftovers(out: Path) -> list[Path]:
    return [p for p in out.rglob("*") if p.name.startswith(".") or p.name.endswith(".tmp")]


# --------------------------------------------------------------------------- planning


# --------------------------------------------------------------------------- the loop


def test_order_outputs_and_errors(explainer: Explainer, tmp_path: Path) -> None:
    inputs = make_images(tmp_path / "imgs", 10, bad=(2, 7))
    out = tmp_path / "out"
    entries, outcome = run(explainer, inputs, out, batch_size=3, workers=2, top_k=5, save_npy=True)
    assert [e["index"] for e in entries] == list(range(10))
    assert [e["status"] for e in entries] == ["error" if i in (2, 7) else "ok" for i in range(10)]
    assert outcome.processed == 10 and outcome.failed == 2
    assert not outcome.interrupted and not outcome.stopped_early
    assert "not an image" in entries[2]["error"]
    ok = entries[0]
    assert ok["outputs"] == {
        "heatmap": "imgs/img00.heatmap.png",
        "overlay": "imgs/img00.overlay.png",
        "relevance": "imgs/img00.relevance.npy",
    }
    assert len(ok["top_k"]) == 3  # clamped to the number of classes
    assert ok["top_k"][0]["label"] in CATEGORIES
    assert sum(t["probability"] for t in ok["top_k"]) == pytest.approx(1.0)
    assert ok["target"]["index"] == ok["top_k"][0]["index"] and ok["target"]["source"] == "predicted"
    assert ok["image"] == {"width": 30, "height": 20}
    assert ok["ledger"]["relative_closure_error"] < 1e-5
    assert ok["relevance"]["positive"] + ok["relevance"]["negative"] == pytest.approx(ok["relevance"]["sum"], abs=1e-5)
    assert ok["conservation"]["error"] == pytest.approx(ok["relevance"]["sum"] - ok["f_x"], abs=1e-6)
    assert set(ok["timing"]) == {"load_s", "explain_s", "write_s", "total_s"}
    rel = np.load(out / ok["outputs"]["relevance"])
    assert rel.shape == (3, 16, 16) and rel.dtype == np.float32
    assert float(rel.sum(dtype=np.float64)) == pytest.approx(ok["ledger"]["sum_pixels"], rel=1e-4, abs=1e-6)
    with Image.open(out / ok["outputs"]["heatmap"]) as im:  # the default full view: the photo's size
        assert im.size == (30, 20) and im.mode == "RGB"
        assert im.text["lrpcli:source"] == inputs[0].path.as_posix()  # marked as ours
    assert ok["render"]["view"] == "full" and ok["render"]["crop_box"] == [5.0, 0.0, 25.0, 20.0]
    assert leftovers(out) == []


def test_requested_target(explainer: Explainer, tmp_path: Path) -> None:
    entries, _ = run(explainer, make_images(tmp_path / "imgs", 2), tmp_path / "out", targets=TargetPlan((Pick("class", 2),)))
    assert all(e["target"] == {**e["target"], "index": 2, "label": "cherry", "source": "requested"} for e in entries)


def test_work_runs_in_pools(explainer: Explainer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, set[str]] = {"load": set(), "write": set()}
    load, write = Pipeline.load, Pipeline.write

    def spy_load(self: Pipeline, item: ImageInput) -> Any:
        seen["load"].add(threading.current_thread().name)
        return load(self, item)

    def spy_write(self: Pipeline, *args: Any) -> Any:
        seen["write"].add(threading.current_thread().name)
        return write(self, *args)

    monkeypatch.setattr(Pipeline, "load", spy_load)
    monkeypatch.setattr(Pipeline, "write", spy_write)
    run(explainer, make_images(tmp_path / "imgs", 6), tmp_path / "out", batch_size=2, workers=2)
    assert seen["load"] and all(name.startswith("lrp-load") for name in seen["load"])
    assert seen["write"] and all(name.startswith("lrp-write") for name in seen["write"])


def test_pending_work_is_bounded(explainer: Explainer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Slow disks must not make results pile up in memory: images explained but not yet emitted
    (their relevance and entries held in memory) never exceed the emitter's limit."""
    write = Pipeline.write
    put = _Emitter.put
    state = {"accepted": 0, "emitted": 0, "peak": 0}
    lock = threading.Lock()

    def slow_write(self: Pipeline, *args: Any) -> Any:
        time.sleep(0.02)
        return write(self, *args)

    def counting_put(self: _Emitter, make: Any, futures: list[Any]) -> None:
        put(self, make, futures)  # returns once the emitter has room for this batch
        with lock:
            state["accepted"] += len(futures)
            state["peak"] = max(state["peak"], state["accepted"] - state["emitted"])

    def emit(entry: ImageEntry) -> None:
        with lock:
            state["emitted"] += 1

    monkeypatch.setattr(Pipeline, "write", slow_write)
    monkeypatch.setattr(_Emitter, "put", counting_put)
    inputs = make_images(tmp_path / "imgs", 30)
    plans = plan_outputs(inputs, tmp_path / "out")
    pipe = Pipeline(explainer, CATEGORIES, RunSettings(preprocess=PP, batch_size=2, workers=1), out_dir=tmp_path / "out")
    pipe.run(inputs, plans, emit)
    assert state["accepted"] == state["emitted"] == 30
    assert 2 <= state["peak"] <= 2 * 2 + 2 * 1  # the limit: 2 batches plus 2 per writer


def test_report_work_runs_off_the_model_thread(explainer: Explainer, tmp_path: Path) -> None:
    """Entries are built and emitted by the ``lrp-emit`` thread, in input order."""
    names: set[str] = set()
    entries: list[dict[str, Any]] = []

    def emit(entry: ImageEntry) -> None:
        names.add(threading.current_thread().name)
        entries.append(entry.to_dict())

    inputs = make_images(tmp_path / "imgs", 7, bad=(3,))
    plans = plan_outputs(inputs, tmp_path / "out")
    Pipeline(explainer, CATEGORIES, RunSettings(preprocess=PP, batch_size=3), out_dir=tmp_path / "out").run(
        inputs, plans, emit
    )
    assert names == {"lrp-emit"}
    assert [e["index"] for e in entries] == list(range(7))
    assert [e["status"] for e in entries] == ["error" if i == 3 else "ok" for i in range(7)]


def test_a_batch_of_only_bad_files(explainer: Explainer, tmp_path: Path) -> None:
    inputs = make_images(tmp_path / "imgs", 5, bad=(2, 3))
    entries, outcome = run(explainer, inputs, tmp_path / "out", batch_size=2)
    assert [e["status"] for e in entries] == ["ok", "ok", "error", "error", "ok"]
    assert outcome.processed == 5 and outcome.failed == 2


def test_an_emit_error_reaches_the_caller(explainer: Explainer, tmp_path: Path) -> None:
    """A failing callback (say, the report's disk is full) ends the run with that error."""
    calls = [0]

    def emit(entry: ImageEntry) -> None:
        calls[0] += 1
        if calls[0] == 2:
            raise OSError("no space left on device")

    inputs = make_images(tmp_path / "imgs", 12)
    plans = plan_outputs(inputs, tmp_path / "out")
    pipe = Pipeline(explainer, CATEGORIES, RunSettings(preprocess=PP, batch_size=2), out_dir=tmp_path / "out")
    with pytest.raises(OSError, match="no space left"):
        pipe.run(inputs, plans, emit)
    assert calls[0] == 2  # nothing is emitted after the failure
    assert leftovers(tmp_path / "out") == []


def test_fail_fast(explainer: Explainer, tmp_path: Path) -> None:
    inputs = make_images(tmp_path / "imgs", 10, bad=(4,))
    entries, outcome = run(explainer, inputs, tmp_path / "out", batch_size=3, fail_fast=True)
    assert [e["index"] for e in entries] == [0, 1, 2, 3, 4]
    assert entries[-1]["status"] == "error"
    assert outcome.stopped_early and outcome.processed == 5


def test_stop_event_ends_run_cleanly(explainer: Explainer, tmp_path: Path) -> None:
    stop = threading.Event()
    inputs = make_images(tmp_path / "imgs", 12)
    out = tmp_path / "out"
    plans = plan_outputs(inputs, out)
    entries: list[dict[str, Any]] = []

    def emit(entry: ImageEntry) -> None:
        entries.append(entry.to_dict())
        stop.set()  # "SIGINT" after the first image

    pipe = Pipeline(explainer, CATEGORIES, RunSettings(preprocess=PP, batch_size=2), out_dir=out)
    outcome = pipe.run(inputs, plans, emit, stop)
    assert outcome.interrupted
    assert 1 <= len(entries) < 12
    assert [e["index"] for e in entries] == list(range(len(entries)))
    written = sorted(p.name for p in out.rglob("*.png"))
    assert len(written) == 2 * len(entries)  # every finished image complete, nothing else
    assert leftovers(out) == []


def test_explain_failure_is_per_batch(explainer: Explainer, tmp_path: Path) -> None:
    calls = [0]

    class Flaky:
        def each(self, x: torch.Tensor, targets: Any, **options: Any) -> Any:
            calls[0] += 1
            if calls[0] == 2:
                raise RuntimeError("boom")
            return explainer.each(x, targets, **options)

    entries, outcome = run(Flaky(), make_images(tmp_path / "imgs", 6), tmp_path / "out", batch_size=2)
    assert [e["status"] for e in entries] == ["ok", "ok", "error", "error", "ok", "ok"]
    assert entries[2]["error"] == "explanation failed (RuntimeError: boom)"
    assert outcome.failed == 2


def test_write_failure_is_an_error_entry(explainer: Explainer, tmp_path: Path) -> None:
    inputs = make_images(tmp_path / "imgs", 3)
    out = tmp_path / "out"
    (out / "imgs").mkdir(parents=True)
    plans = plan_outputs(inputs, out)
    (out / "imgs" / "img01.heatmap.png").mkdir()  # a folder where the file should go
    entries: list[dict[str, Any]] = []
    Pipeline(explainer, CATEGORIES, RunSettings(preprocess=PP), out_dir=out).run(inputs, plans, lambda e: entries.append(e.to_dict()))
    assert [e["status"] for e in entries] == ["ok", "error", "ok"]
    assert entries[1]["error"].startswith("cannot write outputs: ")
    assert leftovers(out) == []


def test_heatmap_colours_in_written_png(explainer: Explainer, tmp_path: Path) -> None:
    """A pixel with known positive relevance is red in the PNG, a negative one blue."""
    pos, neg = (3, 4), (10, 12)

    class Synthetic:
        def each(self, x: torch.Tensor, targets: Any, **options: Any) -> Any:
            (real,) = explainer.each(x, targets, **options)
            relevance = torch.zeros_like(x)
            relevance[:, :, pos[0], pos[1]] = 0.5
            relevance[:, 0, neg[0], neg[1]] = -1.2
            return [dataclasses.replace(real, relevance=relevance)]

    inputs = make_images(tmp_path / "imgs", 1)
    out = tmp_path / "out"
    exact = RenderSettings(view="crop", smooth=0.0, percentile=None, opacity_exponent=1.0, contrast=1.0)
    entries, _ = run(Synthetic(), inputs, out, render=exact)
    entry = entries[0]
    assert entry["relevance"]["positive"] == pytest.approx(1.5)
    assert entry["relevance"]["negative"] == pytest.approx(-1.2)
    with Image.open(out / entry["outputs"]["heatmap"]) as im:
        heat = np.asarray(im.convert("RGB")).astype(int)
    r, g, b = heat[pos]
    assert r >= 200 and g < 120 and b < 120, heat[pos]  # red
    r, g, b = heat[neg]
    assert b >= 200 and r < 60 and g < 60, heat[neg]  # blue (the strongest |R|)
    assert tuple(heat[0, 0]) == (255, 255, 255)  # zero relevance: white
    with Image.open(out / entry["outputs"]["overlay"]) as im:
        over = np.asarray(im.convert("RGB")).astype(int)
    assert over[pos][0] > over[pos][2] + 40 and over[neg][2] > over[neg][0] + 60
    assert over[0, 0][0] == over[0, 0][1] == over[0, 0][2]  # grey where R = 0
    assert entry["render"]["vmax"] == pytest.approx(1.5)


def test_no_work_for_empty_input(explainer: Explainer, tmp_path: Path) -> None:
    entries: list[dict[str, Any]] = []
    outcome = Pipeline(explainer, CATEGORIES, RunSettings(preprocess=PP), out_dir=tmp_path).run([], [], lambda e: entries.append(e.to_dict()))
    assert entries == [] and outcome.processed == 0
    assert not os.listdir(tmp_path)
