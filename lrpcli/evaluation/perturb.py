"""The perturbations of pixel flipping and occlusion: the patch grid and the replacement values.

Replacements are defined in pixel space [0, 1], before normalisation, and applied to the
normalised model input through the affine map ``pixel p → low + p · (high − low)``, where
``low``/``high`` are the normalised values of pixels 0 and 1
(:func:`lrpcli.io.preprocess.pixel_bounds`). Blur and the mean colour commute with that map, so
every mode gives exactly what perturbing the [0, 1] image and normalising it would.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from lrpcli.evaluation.choices import PERTURBATIONS

__all__ = ["PERTURBATIONS", "PatchGrid", "gaussian_blur", "replacement"]


@dataclass(frozen=True)
class PatchGrid:
    """Non-overlapping ``patch x patch`` tiles of an ``height x width`` image, row by row."""

    height: int
    width: int
    patch: int

    def __post_init__(self) -> None:
        if self.patch < 1 or self.patch > min(self.height, self.width):
            raise ValueError(
                f"patch size {self.patch} does not fit a {self.height}x{self.width} image "
                f"(1..{min(self.height, self.width)})"
            )

    @property
    def rows(self) -> int:
        return math.ceil(self.height / self.patch)

    @property
    def cols(self) -> int:
        return math.ceil(self.width / self.patch)

    @property
    def count(self) -> int:
        return self.rows * self.cols

    def pixel_ids(self, device: torch.device | str | None = None) -> Tensor:
        """The patch index of every pixel, ``(height, width)``."""
        r = torch.arange(self.height, device=device) // self.patch
        c = torch.arange(self.width, device=device) // self.patch
        return r[:, None] * self.cols + c[None, :]

    def scores(self, heat: Tensor) -> Tensor:
        """``heat`` ``(height, width)`` summed over each patch: ``(count,)`` float64."""
        if tuple(heat.shape) != (self.height, self.width):
            raise ValueError(f"expected a {self.height}x{self.width} map, got shape {tuple(heat.shape)}")
        ids = self.pixel_ids(heat.device).flatten()
        out = torch.zeros(self.count, dtype=torch.float64, device=heat.device)
        return out.index_add_(0, ids, heat.detach().flatten().to(torch.float64))


def gaussian_blur(x: Tensor, sigma: float) -> Tensor:
    """``x`` ``(C, H, W)`` blurred per channel with a Gaussian of ``sigma`` px (edges replicated)."""
    radius = max(1, math.ceil(3 * sigma))
    t = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    kernel = torch.exp(-0.5 * (t / sigma) ** 2)
    kernel = kernel / kernel.sum()
    c = x.shape[0]
    y = F.pad(x[None], (radius, radius, 0, 0), mode="replicate")
    y = F.conv2d(y, kernel.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    y = F.pad(y, (0, 0, radius, radius), mode="replicate")
    y = F.conv2d(y, kernel.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)
    return y[0]


def replacement(
    x: Tensor, mode: str, low: Tensor, high: Tensor, *, patch: int, generator: torch.Generator
) -> Tensor:
    """The values perturbed pixels of the normalised image ``x`` ``(C, H, W)`` take.

    ``low``/``high``: the normalised values of pixels 0 and 1 (anything with ``C`` elements).
    """
    c = x.shape[0]
    lo = torch.as_tensor(low, dtype=x.dtype).reshape(c, 1, 1).to(x.device)
    hi = torch.as_tensor(high, dtype=x.dtype).reshape(c, 1, 1).to(x.device)
    if mode == "uniform":
        u = torch.rand(tuple(x.shape), generator=generator, dtype=x.dtype).to(x.device)
        return lo + u * (hi - lo)
    if mode == "zero":
        return lo.expand_as(x).clone()
    if mode == "mean":
        return x.mean(dim=(1, 2), keepdim=True).expand_as(x).clone()
    if mode == "blur":
        return gaussian_blur(x, patch / 2)
    raise ValueError(f"perturbation must be one of {', '.join(PERTURBATIONS)}, got {mode!r}")
