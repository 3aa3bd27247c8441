"""The names ``lrp evaluate`` and ``lrp tune`` offer (perturbations, orders, baselines), with what
they mean.

Imports nothing heavy: the command line's help texts show them without importing torch;
:mod:`lrpcli.evaluation.perturb` and :mod:`lrpcli.evaluation.flipping` use these tables.
"""

from __future__ import annotations

from typing import Literal

__all__ = [
    "BASELINES",
    "DEFAULT_BASELINES",
    "OCCLUSION",
    "ORDERS",
    "PERTURBATIONS",
    "RANDOM",
    "OrderName",
    "PerturbationName",
]

PERTURBATIONS: dict[str, str] = {
    "uniform": "each pixel of a perturbed patch becomes a uniform random value in [0, 1] "
    "(Samek et al. 2017)",
    "blur": "perturbed patches show a Gaussian-blurred copy of the image (sigma = P/2)",
    "mean": "perturbed patches take the image's mean colour",
    "zero": "perturbed patches become black (pixel value 0)",
}

PerturbationName = Literal["uniform", "blur", "mean", "zero"]
OrderName = Literal["morf", "lerf", "both"]

ORDERS: dict[str, str] = {
    "morf": "most relevant first: a larger AOPC is better",
    "lerf": "least relevant first: a smaller AOPC is better",
    "both": "MoRF and LeRF (the reversed MoRF order) on the same fill, and SRG = AOPC_MoRF − "
    "AOPC_LeRF: a larger SRG is better",
}
RANDOM = "random"
OCCLUSION = "occlusion"
BASELINES: dict[str, str] = {
    RANDOM: "patches in random order (a new permutation per run, curves averaged over runs)",
    "gradient": "sum over channels of |df/dx| at the model input (sensitivity)",
    "gradient_x_input": "sum over channels of x * df/dx at the model input (signed, like LRP)",
    OCCLUSION: "f(x) − f(x with the patch replaced by the flipping fill), per patch; costs one "
    "forward pass per patch",
}
DEFAULT_BASELINES: tuple[str, ...] = (RANDOM, "gradient", "gradient_x_input")
"""The baselines run unless chosen otherwise (occlusion is opt-in: one forward pass per patch)."""
