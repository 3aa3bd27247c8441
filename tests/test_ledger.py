"""Tests for lrpcli.core.ledger: the batch's account turned into per-image report data."""

from __future__ import annotations

import math

import pytest
import torch

from lrpcli.core.ledger import Ledger, LedgerEntry


def _ledger(n: int = 3, steps: int = 4) -> Ledger:
    g = torch.Generator().manual_seed(0)

    def col() -> torch.Tensor:
        return torch.randn(n, generator=g, dtype=torch.float64)

    entries = [
        LedgerEntry(f"s{k}", "conv2d", f"features.{k}" if k % 2 else None, "epsilon", col(), col(), col(), col(), col())
        for k in range(steps)
    ]
    return Ledger(output=col(), pixels=col(), entries=entries, precision=["float32", "float64", "float32"][:n])


def test_accounts_match_the_entries_one_by_one() -> None:
    ledger = _ledger()
    accounts = ledger.accounts()
    for i in range(3):
        data = accounts.image(i)
        assert data["precision"] == ledger.precision[i]
        assert data["f_x"] == float(ledger.output[i]) and data["sum_pixels"] == float(ledger.pixels[i])
        assert data["closure_error"] == float(ledger.closure_error()[i])
        assert data["relative_closure_error"] == float(ledger.relative_error()[i])
        for name in ("bias", "stabilizer", "dropped"):
            expected = math.fsum(float(getattr(e, name)[i]) for e in ledger.entries)
            assert data["absorbed"][name] == pytest.approx(expected, rel=1e-12, abs=1e-15)
        assert len(data["steps"]) == len(ledger.entries)
        for row, e in zip(data["steps"], ledger.entries):
            assert (row["step"], row["op"], row["module"], row["rule"]) == (e.step, e.op, e.module, e.rule)
            for name in ("r_out", "r_in", "bias", "stabilizer", "dropped", "residual"):
                assert row[name] == float(getattr(e, name)[i]), name  # bit for bit, residual included
        assert ledger.image(i) == data


def test_accounts_without_steps_and_without_entries() -> None:
    ledger = _ledger()
    assert "steps" not in ledger.accounts().image(1, steps=False)
    empty = Ledger(output=torch.tensor([2.0, 3.0], dtype=torch.float64), pixels=torch.tensor([2.0, 2.5], dtype=torch.float64))
    data = empty.accounts().image(1)
    assert data["steps"] == [] and data["absorbed"] == {"bias": 0.0, "stabilizer": 0.0, "dropped": 0.0}
    assert data["closure_error"] == 0.5 and data["precision"] is None


def test_pixel_share_and_distributed_bias() -> None:
    z = torch.zeros(2, dtype=torch.float64)
    spread = torch.tensor([0.5, -0.25], dtype=torch.float64)
    entries = [
        LedgerEntry("a", "conv", "a", "epsilon(bias=distribute)", torch.tensor([2.0, -4.0], dtype=torch.float64),
                    torch.tensor([1.9, -4.0], dtype=torch.float64), z, torch.tensor([0.1, 0.0], dtype=torch.float64), z,
                    spread),
        LedgerEntry("b", "relu", None, "pass", z, z, z, z, z),
    ]  # fmt: skip
    led = Ledger(output=torch.tensor([2.0, -4.0], dtype=torch.float64), pixels=torch.tensor([1.9, -4.0], dtype=torch.float64),
                 entries=entries, precision=["float64"] * 2)  # fmt: skip
    torch.testing.assert_close(led.pixel_share(), torch.tensor([0.95, 1.0], dtype=torch.float64))
    torch.testing.assert_close(led.distributed(), spread)
    assert float(led.closure_error().abs().max()) < 1e-15  # distributed relevance is not absorbed
    one = led.image(1)
    assert one["pixel_share"] == pytest.approx(1.0) and one["distributed_bias"] == pytest.approx(-0.25)
    assert one["steps"][0]["distributed"] == pytest.approx(-0.25) and "distributed" not in one["steps"][1]
    zero = Ledger(output=torch.zeros(1, dtype=torch.float64), pixels=torch.ones(1, dtype=torch.float64))
    assert math.isnan(float(zero.pixel_share()[0]))  # f(x) = 0: no share, not a division by zero
