"""The scores ``lrp tune --score`` offers, with what they mean.

Imports nothing heavy: the command line's help text shows them without importing torch;
:mod:`lrpcli.tuning.scoring` uses this table.
"""

from __future__ import annotations

__all__ = ["SCORES"]

#: the scores ``--score`` offers, with what they mean
SCORES: dict[str, str] = {
    "aopc": "MoRF AOPC of the target logit: how fast the logit falls when the most relevant patches go first",
    "srg": "MoRF AOPC − LeRF AOPC: the area between most- and least-relevant-first curves (twice the cost)",
}
