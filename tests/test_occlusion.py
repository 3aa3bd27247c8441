"""Tests for lrpcli.evaluation.occlusion: one patch replaced at a time, batched."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lrpcli.evaluation.occlusion import occlusion_scores
from lrpcli.evaluation.perturb import PatchGrid


class Weighted(nn.Module):
    """logit 0 = Σ_pixels w · x (per-pixel weights, all channels), logit 1 = 0."""

    def __init__(self, weights: torch.Tensor) -> None:
        super().__init__()
        self.weights = weights

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = (x * self.weights).sum(dim=(1, 2, 3))
        return torch.stack([z, torch.zeros_like(z)], dim=1)


def test_each_patch_scores_the_logit_it_removes_in_bounded_batches() -> None:
    g = torch.Generator().manual_seed(0)
    weights = torch.randn(3, 10, 7, generator=g)
    model = Weighted(weights)
    sizes: list[int] = []
    model.register_forward_hook(lambda m, i, o: sizes.append(i[0].shape[0]))
    x, fill = torch.rand(3, 10, 7, generator=g), torch.rand(3, 10, 7, generator=g)
    grid = PatchGrid(10, 7, 4)  # 3 x 2 patches, ragged edges
    scores = occlusion_scores(model, x, 0, grid, fill, batch_size=4)
    assert sizes == [1, 4, 2]  # the clean forward, then the 6 patches in batches of 4
    ids = grid.pixel_ids()
    expected = [float((weights * (x - fill))[:, ids == p].sum()) for p in range(grid.count)]
    assert scores.dtype == torch.float64 and scores.tolist() == pytest.approx(expected, abs=1e-4)
    sizes.clear()
    given = occlusion_scores(model, x, 0, grid, fill, batch_size=64, clean_logit=float(model(x[None])[0, 0]))
    assert sizes == [1, 6] and torch.allclose(given, scores)  # the clean logit given: no extra forward
    with pytest.raises(ValueError):
        occlusion_scores(model, x, 0, grid, fill, batch_size=0)
