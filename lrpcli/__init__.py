"""lrpcli: Layer-wise Relevance Propagation heatmaps for image classifiers.

The library's public face is the engine in :mod:`lrpcli.core`: :class:`Explainer` /
:func:`explain`, the composites (:data:`PRESETS`, :func:`get_composite`) and the ledger.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lrpcli.lazy import lazy_getattr

__version__ = "0.1.0"

if TYPE_CHECKING:
    from .core.canonize import prepare
    from .core.composites import PRESETS, Composite, get_composite
    from .core.engine import Explainer, Explanation, explain, top_classes
    from .core.ledger import Ledger, LedgerEntry
    from .core.program import UnsupportedOpError
    from .run.allocator import tune_allocator

#: where each public name lives; imported on first use, so that ``import lrpcli`` (and the
#: ``lrp`` command's start-up, ``--help`` and ``--version``) does not import torch
_LAZY = {
    "prepare": "lrpcli.core.canonize",
    "PRESETS": "lrpcli.core.composites",
    "Composite": "lrpcli.core.composites",
    "get_composite": "lrpcli.core.composites",
    "Explainer": "lrpcli.core.engine",
    "Explanation": "lrpcli.core.engine",
    "explain": "lrpcli.core.engine",
    "top_classes": "lrpcli.core.engine",
    "Ledger": "lrpcli.core.ledger",
    "LedgerEntry": "lrpcli.core.ledger",
    "UnsupportedOpError": "lrpcli.core.program",
    "tune_allocator": "lrpcli.run.allocator",
}


__getattr__ = lazy_getattr('lrpcli', _LAZY, globals())


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))

__all__ = [
    "PRESETS",
    "Composite",
    "Explainer",
    "Explanation",
    "Ledger",
    "LedgerEntry",
    "UnsupportedOpError",
    "__version__",
    "explain",
    "get_composite",
    "prepare",
    "tune_allocator",
    "top_classes",
]
