"""The names of the rule presets, in the order :data:`lrpcli.core.composites.PRESETS` lists them.

Imports nothing: the command line's help texts list the presets without importing torch
(``tests/cli/test_startup.py`` checks that the two lists are equal).
"""

from __future__ import annotations

__all__ = ["PRESET_NAMES"]

PRESET_NAMES: tuple[str, ...] = (
    "epsilon",
    "epsilon_plus",
    "epsilon_plus_flat",
    "epsilon_gamma_box",
    "epsilon_alpha2_beta1",
    "epsilon_alpha2_beta1_flat",
)
