"""Tests for lrpcli.run.allocator: each case runs in a fresh interpreter (the setting is process-wide)."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT

pytestmark = pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc's mallopt only"
)

# page faults while allocating, filling and freeing a 64 MiB tensor ten times, after one warm-up
PROBE = """
import json, resource, sys, torch
import lrpcli.run.allocator as a
result = a.tune_allocator() if sys.argv[1] == "tune" else "untouched"
def churn():
    for _ in range(10):
        t = torch.empty(16 << 20)
        t.fill_(1.0)
        del t
churn()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
churn()
faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
print(json.dumps({"result": result, "again": a.tune_allocator() if sys.argv[1] == "tune" else None, "faults": faults}))
"""


def clean_env(**env: str) -> dict[str, str]:
    """This environment without conftest's ``LRPCLI_MALLOC=default``, plus ``env``."""
    return {**{k: v for k, v in os.environ.items() if k != "LRPCLI_MALLOC"}, **env}


def probe(mode: str, **env: str) -> dict[str, object]:
    out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True, env=clean_env(**env))
    return json.loads(out.stdout)


def test_tuned_allocator_reuses_freed_tensors_without_page_faults() -> None:
    plain = probe("none")
    tuned = probe("tune")
    assert tuned["result"] == "tuned" and tuned["again"] == "tuned"
    # glibc's default hands each 64 MiB block back to the kernel: ~16k faults per round trip
    assert plain["faults"] > 50_000, plain
    assert tuned["faults"] < 1_000, tuned


def test_environment_variable_turns_it_off() -> None:
    off = probe("tune", LRPCLI_MALLOC="default")
    assert off["result"] == "default (LRPCLI_MALLOC=default)"
    assert off["faults"] > 50_000, off


def test_the_lrp_command_tunes_it_and_says_so(tmp_path: Path) -> None:
    coffee = ROOT / "sample_images" / "coffee.png"
    for env, want in (({}, "tuned"), ({"LRPCLI_MALLOC": "default"}, "default (LRPCLI_MALLOC=default)")):
        out = tmp_path / want.split()[0]
        subprocess.run(
            [sys.executable, "-m", "lrpcli", "explain", str(coffee), "--out", str(out), "-q"],
            check=True, capture_output=True, env=clean_env(**env), cwd=ROOT,
        )  # fmt: skip
        assert json.loads((out / "report.json").read_text())["run"]["allocator"] == want
