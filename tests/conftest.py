"""Shared test helpers: seeded torchvision models with realistic BatchNorm statistics."""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torchvision

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "sample_images"

# The in-process CLI tests would otherwise tune the allocator of the whole pytest process (freed
# memory kept for its lifetime, across hundreds of different models); `lrp` subprocesses inherit
# this too. tests/test_allocator.py checks the tuned setting in processes of its own.
os.environ["LRPCLI_MALLOC"] = "default"


def calibrated(name: str, seed: int = 0, size: int = 64, **kwargs: object) -> torch.nn.Module:
    """``torchvision.models.<name>(weights=None)`` with a fixed seed, in eval mode.

    BatchNorm running statistics are set from one batch of random images (cumulative average),
    as training would, so that activations neither vanish nor explode: an untouched freshly
    initialised network (running mean 0, variance 1) can have logits of 1e-9, which would make
    every relative check meaningless.
    """
    torch.manual_seed(seed)
    return calibrate(getattr(torchvision.models, name)(weights=None, **kwargs), seed, size)


def calibrate(model: torch.nn.Module, seed: int = 0, size: int = 64) -> torch.nn.Module:
    """Set ``model``'s BatchNorm running statistics from one random batch (see :func:`calibrated`)."""
    bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if bns:
        for bn in bns:
            bn.reset_running_stats()
            bn.momentum = None
        model.train()
        with torch.no_grad():
            model(torch.randn(8, 3, size, size, generator=torch.Generator().manual_seed(seed + 1)))
        for bn in bns:
            bn.momentum = 0.1
    return model.eval()
