"""lrpcli: Layer-wise Relevance Propagation heatmaps for image classifiers.

The library's public face is the engine in :mod:`lrpcli.core`: :class:`Explainer` /
:func:`explain`, the composites (:data:`PRESETS`, :func:`get_composite`) and the ledger.
"""

__version__ = "0.1.0"

from .core.canonize import prepare  # noqa: E402 - the version first: core modules may read it
from .core.composites import PRESETS, Composite, get_composite  # noqa: E402
from .core.engine import Explainer, Explanation, explain  # noqa: E402
from .core.ledger import Ledger, LedgerEntry  # noqa: E402
from .core.program import UnsupportedOpError  # noqa: E402
from .run.allocator import tune_allocator  # noqa: E402

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
]
