"""Tests for lrpcli.run.resume: which entries of an earlier report.json ``--resume`` reuses."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lrpcli.io.inputs import ImageInput
from lrpcli.run.entries import ImageEntry, Prediction, Result, Target
from lrpcli.run.outputs import REPORT_NAME, output_paths
from lrpcli.run.report import ReportWriter
from lrpcli.run.resume import ResumeError, load_previous

DIGEST = "a" * 64
OPTIONS = {"target": "pred", "top_k": 5, "save_npy": False}


def entry(index: int, item: ImageInput, out: Path, *, ok: bool = True) -> ImageEntry:
    if not ok:
        return ImageEntry(index, item.path.as_posix(), item.rel.as_posix(), status="error", error="bad file")
    plan = output_paths(out, item.rel)
    for path in plan.all():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"png")
    result = Result(
        image={"width": 4, "height": 4},
        top_k=[Prediction(0, "a", 1.0, 2.0)],
        target=Target(0, "a", "predicted", 1.0),
        f_x=2.0,
        relevance={"sum": 2.0, "positive": 2.0, "negative": 0.0},
        conservation={"error": 0.0, "relative_error": 0.0},
        ledger={"relative_closure_error": 0.0, "closure_error": 0.0},
    )
    return ImageEntry(
        index, item.path.as_posix(), item.rel.as_posix(), result=result,
        outputs={"heatmap": plan.heatmap.relative_to(out).as_posix(), "overlay": plan.overlay.relative_to(out).as_posix()},
        render={"cmap": "bwr", "vmax": 1.0, "scale": "max |R|"}, timing={"load_s": 0.0},
    )  # fmt: skip


def write_report(out: Path, entries: list[ImageEntry], *, digest: str = DIGEST, options: dict | None = None) -> None:
    run = {"config": {"sha256": digest}, "options": dict(options or OPTIONS)}
    with ReportWriter(out / REPORT_NAME, run, inputs=len(entries), tolerance=1e-5) as writer:
        for e in entries:
            writer.add(e)
        writer.write()


@pytest.fixture()
def inputs(tmp_path: Path) -> list[ImageInput]:
    return [ImageInput(tmp_path / "in" / f"{n}.png", Path(f"in/{n}.png")) for n in "abcd"]


def test_no_report_means_nothing_to_resume(tmp_path: Path, inputs: list[ImageInput]) -> None:
    plans = [output_paths(tmp_path / "out", i.rel) for i in inputs]
    assert load_previous(tmp_path / "out", inputs, plans, digest=DIGEST, options=OPTIONS) is None


def test_finished_entries_are_reused_in_order_the_rest_is_redone(tmp_path: Path, inputs: list[ImageInput]) -> None:
    out = tmp_path / "out"
    old = [entry(0, inputs[0], out), entry(1, inputs[1], out, ok=False), entry(2, inputs[3], out)]
    write_report(out, old)
    (out / "in" / "d.overlay.png").unlink()  # d's outputs are incomplete: explain it again
    plans = [output_paths(out, i.rel) for i in inputs]
    state = load_previous(out, inputs, plans, digest=DIGEST, options=OPTIONS)
    assert state is not None
    try:
        assert state.reused == 1 and state.todo() == [1, 2, 3]
        reused = list(state.entries_before(len(inputs)))
        assert [(e.index, e.input) for e in reused] == [(0, inputs[0].path.as_posix())]
        assert reused[0].to_dict() == old[0].to_dict()
        assert list(state.entries_before(len(inputs))) == []  # each entry once
    finally:
        state.close()


def test_reused_entries_are_renumbered_to_the_current_inputs(tmp_path: Path, inputs: list[ImageInput]) -> None:
    out = tmp_path / "out"
    write_report(out, [entry(0, inputs[2], out)])
    plans = [output_paths(out, i.rel) for i in inputs]
    state = load_previous(out, inputs, plans, digest=DIGEST, options=OPTIONS)
    assert state is not None
    try:
        assert list(state.entries_before(2)) == []  # c is the third input now
        assert [e.index for e in state.entries_before(3)] == [2]
    finally:
        state.close()


def test_another_config_or_option_is_refused_with_the_reason(tmp_path: Path, inputs: list[ImageInput]) -> None:
    out = tmp_path / "out"
    plans = [output_paths(out, i.rel) for i in inputs]
    write_report(out, [entry(0, inputs[0], out)], digest="b" * 64)
    with pytest.raises(ResumeError, match=r"another config \(sha256 bbbbbbbbbbbb…, now aaaaaaaaaaaa…\)"):
        load_previous(out, inputs, plans, digest=DIGEST, options=OPTIONS)
    write_report(out, [entry(0, inputs[0], out)], options={**OPTIONS, "top_k": 3})
    with pytest.raises(ResumeError, match=r"--top-k 3 \(now 5\)"):
        load_previous(out, inputs, plans, digest=DIGEST, options=OPTIONS)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{not json", "cannot read"),
        (json.dumps({"kind": "something else", "schema_version": 1, "run": {}, "images": []}), "not an lrpcli report"),
    ],
)
def test_unreadable_or_foreign_reports_are_refused(tmp_path: Path, inputs: list[ImageInput], text: str, message: str) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / REPORT_NAME).write_text(text, encoding="utf-8")
    plans = [output_paths(out, i.rel) for i in inputs]
    with pytest.raises(ResumeError, match=message):
        load_previous(out, inputs, plans, digest=DIGEST, options=OPTIONS)


def test_an_entry_this_version_did_not_write_is_explained_again(tmp_path: Path, inputs: list[ImageInput]) -> None:
    out = tmp_path / "out"
    write_report(out, [entry(0, inputs[0], out), entry(1, inputs[1], out)])
    doc = json.loads((out / REPORT_NAME).read_text(encoding="utf-8"))
    doc["images"][1]["target"]["colour"] = "red"  # an unknown field: not an entry we can rebuild exactly
    (out / REPORT_NAME).write_text(json.dumps(doc), encoding="utf-8")
    plans = [output_paths(out, i.rel) for i in inputs]
    state = load_previous(out, inputs, plans, digest=DIGEST, options=OPTIONS)
    assert state is not None
    try:
        assert state.todo() == [1, 2, 3]
    finally:
        state.close()
