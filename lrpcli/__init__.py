"""lrpcli: Layer-wise Relevance Propagation heatmaps for image classifiers."""

from .allocator import tune_allocator
from .composites import PRESETS, Composite, get_composite
from .engine import Explainer, Explanation, explain, prepare
from .graph import UnsupportedOpError
from .ledger import Ledger, LedgerEntry

__version__ = "0.1.0"

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
