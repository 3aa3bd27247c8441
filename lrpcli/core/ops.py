"""Which torch operations are which step kind: the tables :mod:`lrpcli.core.graph` classifies by,
the sign and zero facts canonization and the engine rely on, and out-of-place versions of
in-place layers. A new element-wise op, move or sum is one entry here.
"""

from __future__ import annotations

import operator
import sys
import threading
from typing import Any, Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import linearize
from .program import StepKind


ELEMENTWISE_MODULES: tuple[type[nn.Module], ...] = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU, nn.Mish,
    nn.Hardswish, nn.Hardtanh, nn.Softplus, nn.Tanh, nn.Sigmoid, nn.Hardsigmoid, nn.LogSigmoid,
    nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout,
)  # fmt: skip
GATE_MODULES: tuple[type[nn.Module], ...] = (nn.Sigmoid, nn.Hardsigmoid, nn.Tanh, nn.Softmax)
MOVE_MODULES: tuple[type[nn.Module], ...] = (
    nn.Flatten, nn.Unflatten, nn.ZeroPad1d, nn.ZeroPad2d, nn.ZeroPad3d, nn.ConstantPad1d, nn.ConstantPad2d,
    nn.ConstantPad3d, nn.ReflectionPad1d, nn.ReflectionPad2d, nn.ReplicationPad1d, nn.ReplicationPad2d,
    nn.ChannelShuffle, nn.PixelShuffle, nn.PixelUnshuffle, nn.Upsample,
)  # fmt: skip
MAX_MODULES: tuple[type[nn.Module], ...] = (
    nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d,
)  # fmt: skip
NORM_MODULES: tuple[type[nn.Module], ...] = (
    nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d, nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d,
)  # fmt: skip
AFFINE_MODULES: tuple[type[nn.Module], ...] = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
BATCHNORM_MODULES: tuple[type[nn.Module], ...] = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)

ELEMENTWISE_FUNCTIONS = {
    F.relu, F.relu6, F.leaky_relu, F.elu, F.selu, F.celu, F.gelu, F.silu, F.mish, F.hardswish, F.hardtanh,
    F.softplus, F.dropout, F.dropout1d, F.dropout2d, F.dropout3d, F.alpha_dropout, torch.relu, torch.tanh,
    torch.sigmoid, F.sigmoid, F.hardsigmoid, F.tanh, torch.clamp, torch.clip, torch.square,
}  # fmt: skip
GATE_FUNCTIONS = {torch.sigmoid, F.sigmoid, F.hardsigmoid, torch.tanh, F.tanh, F.softmax, torch.softmax}
# (+ torchvision's swin ``_patch_merging_pad``, added by register_torchvision())
MOVE_FUNCTIONS = {
    torch.flatten, torch.reshape, torch.permute, torch.transpose, torch.squeeze, torch.unsqueeze, torch.cat,
    torch.concat, torch.stack, torch.chunk, torch.split, torch.narrow, torch.roll, torch.movedim, F.pad,
    torch.unbind, torch.swapaxes, torch.t, F.interpolate,
}  # fmt: skip
MAX_FUNCTIONS = {
    F.max_pool1d, F.max_pool2d, F.max_pool3d, F.adaptive_max_pool1d, F.adaptive_max_pool2d, F.adaptive_max_pool3d,
    torch.amax,
}  # fmt: skip
NORM_FUNCTIONS = {
    operator.add, operator.sub, torch.add, torch.sub, F.avg_pool1d, F.avg_pool2d, F.avg_pool3d,
    F.adaptive_avg_pool1d, F.adaptive_avg_pool2d, F.adaptive_avg_pool3d, torch.mean, torch.sum,
}  # fmt: skip
SCALE_FUNCTIONS = {operator.mul, torch.mul, operator.truediv, torch.div, operator.neg, torch.neg}
META_METHODS = {"size", "dim", "numel", "ndimension", "type", "get_device", "is_contiguous"}
PASS_METHODS = {
    "relu", "sigmoid", "tanh", "clamp", "clip", "contiguous", "clone", "float", "double", "half", "to",
    "type_as", "detach", "hardswish", "silu", "square",
}  # fmt: skip
GATE_METHODS = {"sigmoid", "tanh", "softmax"}
MOVE_METHODS = {
    "view", "reshape", "flatten", "permute", "transpose", "squeeze", "unsqueeze", "expand", "expand_as",
    "chunk", "split", "narrow", "roll", "unflatten", "movedim", "swapaxes", "unbind", "repeat", "t", "view_as",
    "reshape_as",
}  # fmt: skip
MAX_METHODS = {"amax"}
NORM_METHODS = {"add", "sub", "mean", "sum"}
SCALE_METHODS = {"mul", "div", "neg"}
INPLACE_FUNCTIONS = {operator.iadd: operator.add, operator.isub: operator.sub, operator.imul: operator.mul,
                     operator.itruediv: operator.truediv}  # fmt: skip
NON_TENSOR_FUNCTIONS = {getattr, len, operator.floordiv, operator.mod}


#: (members, step kind, rule name): how a tensor method or a function is propagated
METHOD_TABLE: list[tuple[set[Any], StepKind, str]] = [
    (META_METHODS, StepKind.META, ""), (PASS_METHODS, StepKind.PASS, "pass"), (MOVE_METHODS, StepKind.MOVE, "move"),
    (MAX_METHODS, StepKind.MOVE, "winner_takes_all"), (NORM_METHODS, StepKind.NORM, "norm"),
]  # fmt: skip
FUNCTION_TABLE: list[tuple[set[Any], StepKind, str]] = [
    (NON_TENSOR_FUNCTIONS, StepKind.META, ""), (ELEMENTWISE_FUNCTIONS, StepKind.PASS, "pass"),
    (MOVE_FUNCTIONS, StepKind.MOVE, "move"), (MAX_FUNCTIONS, StepKind.MOVE, "winner_takes_all"),
    (NORM_FUNCTIONS, StepKind.NORM, "norm"),
]  # fmt: skip


def lookup(key: Any, table: list[tuple[set[Any], StepKind, str]]) -> tuple[StepKind, str] | None:
    for members, kind, rule in table:
        try:
            if key in members:
                return kind, rule
        except TypeError:  # unhashable target
            return None
    return None


TRANSPARENT_METHODS = {
    "contiguous", "view", "reshape", "transpose", "permute", "to", "float", "unsqueeze", "expand", "expand_as",
}  # fmt: skip

MIX_FUNCTIONS = {torch.einsum, torch.matmul, torch.bmm, operator.matmul}
MIX_METHODS = {"matmul", "bmm"}


def out_of_place_module(mod: nn.Module) -> Callable[..., Any]:
    """A callable computing ``mod`` without modifying its input (even if ``inplace=True``)."""
    if isinstance(mod, (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.Identity)):
        return lambda x, *a, **k: x
    if not getattr(mod, "inplace", False):
        return mod
    if isinstance(mod, nn.ReLU):
        return torch.relu
    if isinstance(mod, nn.ReLU6):
        return F.relu6
    if isinstance(mod, nn.Hardtanh):
        return lambda x: F.hardtanh(x, mod.min_val, mod.max_val)
    if isinstance(mod, nn.LeakyReLU):
        return lambda x: F.leaky_relu(x, mod.negative_slope)
    if isinstance(mod, nn.SiLU):
        return F.silu
    if isinstance(mod, nn.Hardswish):
        return F.hardswish
    if isinstance(mod, nn.Hardsigmoid):
        return F.hardsigmoid
    if isinstance(mod, nn.ELU):
        return lambda x: F.elu(x, mod.alpha)
    return lambda x: mod(x.clone())


def batchnorm_eval(bn: nn.modules.batchnorm._BatchNorm) -> Callable[[torch.Tensor], torch.Tensor]:
    def run(x: torch.Tensor) -> torch.Tensor:
        return F.batch_norm(x, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps)

    return run


DROPOUT_FUNCTIONS = {F.dropout, F.dropout1d, F.dropout2d, F.dropout3d, F.alpha_dropout}
STOCHASTIC_DEPTH: list[Callable[..., Any]] = []  # torchvision.ops.stochastic_depth, once registered
_REGISTER_LOCK = threading.Lock()


def register_torchvision() -> None:
    """Teach the graph torchvision's functions (swin's patch-merging pad and attention, stochastic
    depth) once torchvision has been imported: a model can only contain them then, and importing
    torchvision here would add almost a second to every start of ``lrp``."""
    if STOCHASTIC_DEPTH or "torchvision" not in sys.modules:
        return
    with _REGISTER_LOCK:  # explainers may be built in several threads
        if STOCHASTIC_DEPTH:
            return
        from torchvision.models import swin_transformer
        from torchvision.ops.stochastic_depth import stochastic_depth

        MOVE_FUNCTIONS.add(swin_transformer._patch_merging_pad)
        linearize.add_attention_function(swin_transformer.shifted_window_attention, ("qkv_bias", "proj_bias"))
        DROPOUT_FUNCTIONS.add(stochastic_depth)
        STOCHASTIC_DEPTH.append(stochastic_depth)  # last: the flag that the rest is in place


def dropout_free(fn: Callable[..., Any]) -> Callable[..., Any]:
    if fn in DROPOUT_FUNCTIONS:
        return lambda x, *a, **k: x
    return fn


#: ops whose output is never negative
NONNEG_OPS = {"ReLU", "ReLU6", "Sigmoid", "Hardsigmoid", "relu", "relu6", "sigmoid", "hardsigmoid",
              "Tensor.relu", "Tensor.sigmoid"}  # fmt: skip
#: ops whose output is non-negative when every signal input is
SIGN_KEEPING_OPS = {"Dropout", "Dropout1d", "Dropout2d", "Dropout3d", "Identity", "dropout", "Tensor.contiguous",
                    "Tensor.clone", "Tensor.float", "Tensor.to", "add", "Tensor.add", "mean", "Tensor.mean", "sum",
                    "Tensor.sum"}  # fmt: skip
#: element-wise ops with f(0) = 0: a zero stays zero, and so does the relevance passed through
ZERO_KEEPING_PASSES = {
    "ReLU", "relu", "Tensor.relu", "ReLU6", "relu6", "Dropout", "Dropout1d", "Dropout2d", "Dropout3d", "Identity",
    "dropout", "Tensor.contiguous", "Tensor.clone", "Tensor.float", "Tensor.to", "Tensor.detach", "mul", "Tensor.mul",
    "truediv", "Tensor.div", "stochastic_depth",
}  # fmt: skip
RELU_OPS = {"ReLU", "relu", "Tensor.relu"}
#: passes whose output is zero exactly where their input is <= 0
ZERO_BELOW_OPS = RELU_OPS | {"ReLU6", "relu6"}
#: data movement whose adjoint spreads relevance onto positions other than the value's own
SPREADING_MOVES = {"interpolate", "Upsample"}
