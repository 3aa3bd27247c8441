"""What the report says of the relevance arriving at an inner module (``--layer NAME``): its
total, its share of f(x), and the channels that carry most of it.

The channel axis: ``(C, H, W)`` and ``(C, D, H, W)`` outputs (convolutions) have channels first;
``(T, D)`` outputs (transformer tokens) have them last; a ``(D,)`` output is all channels. The
``.npy`` file keeps the whole tensor, so any other grouping is a sum away.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["channel_axis", "layer_summary"]


def channel_axis(shape: tuple[int, ...]) -> int:
    """The channel axis of one image's output of this shape (see the module's docstring)."""
    return len(shape) - 1 if len(shape) == 2 else 0


def layer_summary(name: str, relevance: np.ndarray, f_x: float, top: int) -> dict[str, Any]:
    """One image's ``layers[]`` item: shape, channel axis, ΣR, its share of f(x), per-channel
    sums' ``top`` most positive and most negative channels."""
    axis = channel_axis(relevance.shape)
    per_channel = np.moveaxis(relevance, axis, 0).reshape(relevance.shape[axis], -1).sum(1, dtype=np.float64)
    total = float(per_channel.sum())
    k = min(top, per_channel.size)
    order = np.argsort(per_channel, kind="stable")
    return {
        "layer": name,
        "shape": list(relevance.shape),
        "channel_axis": axis,
        "sum": total,
        "share_of_f_x": total / f_x if f_x else None,
        "positive": float(per_channel[per_channel > 0].sum()),
        "negative": float(per_channel[per_channel < 0].sum()),
        "top_channels": [{"channel": int(c), "relevance": float(per_channel[c])} for c in order[::-1][:k]],
        "bottom_channels": [{"channel": int(c), "relevance": float(per_channel[c])} for c in order[:k]],
    }
