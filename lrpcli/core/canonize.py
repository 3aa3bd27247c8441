"""Canonization: the classified graph of :mod:`lrpcli.core.graph` made into a finished :class:`Program`.

Every pass is here, in the order :func:`build_program` runs them:

1. zero padding that feeds only a convolution is folded into it (``Affine.pre_pad``);
2. each eval-mode BatchNorm (module, or ``F.batch_norm`` with constant statistics as in timm's
   ``BatchNormAct2d``) directly after a conv/dense layer is folded into its weights; one that
   cannot be folded becomes a per-channel affine step of its own;
3. affine layers whose input is provably non-negative (after a ReLU, pooling of it, ...) are
   marked (rules then skip the ``W⁻`` passes);
4. functional layers with constant weights (``F.linear``, ``F.conv*``, ``F.layer_norm``,
   ``F.group_norm``) become affine and frozen steps;
5. the composite-independent analysis the engine needs (:class:`~lrpcli.core.program.Analysis`).

:func:`prepare` caches the program per model while its parameters and buffers are unchanged.
"""

from __future__ import annotations

import operator
import weakref
from typing import Any, Callable

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from . import linearize
from .graph import BATCH_NORM_ARGS, classify_model
from .layers import Affine, BatchNormStats, FunctionalBatchNorm, fold_batchnorm, from_batchnorm
from .ops import NONNEG_OPS, SIGN_KEEPING_OPS
from .program import Analysis, Program, Ref, Step, StepKind, UnsupportedOpError, refs_in

__all__ = ["build_program", "fingerprint", "prepare"]


def build_program(model: nn.Module) -> Program:
    """Trace, classify and canonize ``model`` into a :class:`Program` (with its analysis)."""
    steps, input_index, output_index, modules = classify_model(model)
    program = Program(steps, input_index, output_index, [])
    _fold_padding(program)
    _fold_batchnorm(program, modules)
    _mark_nonnegative_inputs(program, modules)
    _resolve_functional(program)
    program.analysis = analyse(program)
    return program


_PROGRAMS: "weakref.WeakKeyDictionary[nn.Module, tuple[tuple[Any, ...], Program]]" = weakref.WeakKeyDictionary()


def fingerprint(model: nn.Module) -> tuple[Any, ...]:
    """Identity and version of every parameter and buffer: changes when the model does."""
    tensors = list(model.parameters()) + list(model.buffers())
    return tuple((t.data_ptr(), t._version, t.dtype, str(t.device), tuple(t.shape)) for t in tensors)


def prepare(model: nn.Module) -> Program:
    """The canonized program for ``model`` (cached while its parameters and buffers are unchanged)."""
    fp = fingerprint(model)
    hit = _PROGRAMS.get(model)
    if hit is not None and hit[0] == fp:
        return hit[1]
    program = build_program(model)
    _PROGRAMS[model] = (fp, program)
    return program


# --------------------------------------------------------------------------- 1-2: folding


def _users(program: Program) -> dict[int, list[int]]:
    users: dict[int, list[int]] = {s.index: [] for s in program.steps}
    for s in program.steps:
        for r in s.refs():
            users[r.index].append(s.index)
    return users


def _zero_pad(step: Step) -> tuple[int, ...] | None:
    """The padding of a constant-zero pad step, or None."""
    fn = step.fn
    if isinstance(fn, (nn.ZeroPad1d, nn.ZeroPad2d, nn.ZeroPad3d)):
        return tuple(fn.padding)
    if isinstance(fn, (nn.ConstantPad1d, nn.ConstantPad2d, nn.ConstantPad3d)) and fn.value == 0:
        return tuple(fn.padding)
    if fn is F.pad:
        pad = step.args[1] if len(step.args) > 1 else step.kwargs.get("pad")
        mode = step.args[2] if len(step.args) > 2 else step.kwargs.get("mode", "constant")
        value = step.args[3] if len(step.args) > 3 else step.kwargs.get("value", None)
        if mode == "constant" and not value and isinstance(pad, (tuple, list)) and all(isinstance(p, int) for p in pad):
            return tuple(pad)
    return None


def _fold_padding(program: Program) -> None:
    """Fold constant zero padding that feeds only a convolution into that convolution."""
    users = _users(program)
    for step in program.steps:
        if step.kind is not StepKind.AFFINE or step.affine is None or step.affine.kind != "conv":
            continue
        src = program.steps[step.args[0].index]
        if src.kind is not StepKind.MOVE or users[src.index] != [step.index]:
            continue
        pad = _zero_pad(src)
        nd = len(step.affine.stride)
        if pad is None or len(pad) > 2 * nd:
            continue
        pad = tuple(pad) + (0,) * (2 * nd - len(pad))
        if step.affine.pre_pad is not None:
            pad = tuple(a + b for a, b in zip(pad, step.affine.pre_pad))
        step.affine.pre_pad = pad
        step.args = (src.args[0],) + step.args[1:]
        src.kind, src.args, src.kwargs = StepKind.DEAD, (), {}
        note = f"folded padding {src.name} {list(pad)} into {step.module or step.name}"
        step.notes.append(note)
        program.canonizations.append(note)


def _batchnorm_of(program: Program, step: Step, modules: dict[str, nn.Module]) -> tuple[BatchNormStats, str]:
    """The statistics of a ``batchnorm`` step and its name: the module, or ``F.batch_norm``'s constants."""
    if step.fn is not F.batch_norm:
        bn = modules[str(step.module)]
        return bn, type(bn).__name__  # type: ignore[return-value]
    bound = dict(zip(BATCH_NORM_ARGS, step.args)) | step.kwargs
    stats = {k: _const_value(program, bound.get(k)) for k in ("running_mean", "running_var", "weight", "bias")}
    eps = float(_const_value(program, bound.get("eps", 1e-5)))
    return FunctionalBatchNorm(**stats, eps=eps), "batch_norm"


def _fold_batchnorm(program: Program, modules: dict[str, nn.Module]) -> None:
    """Fold each eval-mode BatchNorm (module or ``F.batch_norm``) that directly follows a conv/dense
    layer (its only user) into it; any other becomes a per-channel affine step."""
    users = _users(program)
    for step in program.steps:
        if step.kind is not StepKind.BATCHNORM:
            continue
        bn, bn_name = _batchnorm_of(program, step, modules)
        step.args, step.kwargs = step.args[:1], {}
        src = program.steps[step.args[0].index] if step.args and isinstance(step.args[0], Ref) else None
        # shape queries of the layer's output (timm asserts its rank) read the folded output just as well
        if src is None or src.kind is not StepKind.AFFINE or src.affine is None or src.affine.kind == "scale" or (
            [u for u in users[src.index] if program.steps[u].live] != [step.index]
        ):
            try:
                step.affine = from_batchnorm(bn)
            except ValueError as exc:
                raise UnsupportedOpError(step.op, step.name, step.module, str(exc)) from exc
            step.kind, step.affine_type, step.rule_name = StepKind.AFFINE, bn_name, ""
            step.fn = lambda x, a=step.affine: a.forward(x, None, a.bias)
            note = (
                f"{step.module or step.name}: BatchNorm not directly after a conv/dense layer, "
                "kept as a per-channel affine layer"
            )
            step.notes.append(note)
            program.canonizations.append(note)
            continue
        # the layer's step computes the folded map (under the BatchNorm's name, as the ledger knows it)
        # and the BatchNorm's users read it from there
        folded = fold_batchnorm(src.affine, bn)
        note = f"folded {step.module or step.name} into {src.module or src.name}"
        src.affine, src.name, src.op = folded, step.name, f"{src.affine_type}+{bn_name}"
        src.fn = lambda x, a=folded: a.forward(x, None, a.bias)
        src.notes.append(note)
        _redirect(program, users, step.index, src.index)
        step.kind, step.args, step.kwargs = StepKind.DEAD, (), {}
        program.canonizations.append(note)


def _redirect(program: Program, users: dict[int, list[int]], old: int, new: int) -> None:
    """Make every reference to step ``old`` refer to step ``new`` (``users`` updated to match)."""
    env: dict[int, Ref] = {old: Ref(new)}
    for u in dict.fromkeys(users[old]):
        s = program.steps[u]
        s.args, s.kwargs = _rename(s.args, env), _rename(s.kwargs, env)
    users[new] = [u for u in users[new] if u != old] + users[old]
    users[old] = []


def _rename(obj: Any, env: dict[int, Ref]) -> Any:
    """``obj`` with the references in ``env`` replaced (nested tuples, lists, dicts, slices)."""
    if isinstance(obj, Ref):
        return env.get(obj.index, obj)
    if isinstance(obj, (tuple, list)):
        return type(obj)(_rename(o, env) for o in obj)
    if isinstance(obj, dict):
        return {k: _rename(v, env) for k, v in obj.items()}
    if isinstance(obj, slice):
        return slice(*_rename((obj.start, obj.stop, obj.step), env))
    return obj


# --------------------------------------------------------------------------- 3: non-negative inputs


def _mark_nonnegative_inputs(program: Program, modules: dict[str, nn.Module]) -> None:
    """Tell affine layers whose input is provably ≥ 0 (after ReLU, max/avg pooling of it, ...)."""
    nonneg: set[int] = set()
    for s in program.steps:
        live = [r.index for r in s.refs() if program.steps[r.index].live]
        mod = modules.get(s.module or "") if s.kind is StepKind.PASS else None
        if s.op in NONNEG_OPS or (isinstance(mod, nn.Hardtanh) and mod.min_val >= 0):
            nonneg.add(s.index)
        elif live and all(i in nonneg for i in live) and (
            s.kind in (StepKind.MOVE, StepKind.SELECT, StepKind.GATE)
            or (s.kind in (StepKind.NORM, StepKind.PASS) and s.op in SIGN_KEEPING_OPS)
            or s.kind is StepKind.NORM and "Pool" in s.op or s.op.startswith(("avg_pool", "adaptive_avg"))
        ):
            nonneg.add(s.index)
        if s.kind is StepKind.AFFINE and s.affine is not None and s.args and isinstance(s.args[0], Ref):
            s.affine.input_nonneg = s.args[0].index in nonneg


# --------------------------------------------------------------------------- 4: functional layers


def _const_value(program: Program, obj: Any) -> Any:
    """Evaluate a constant (input-independent) argument at build time (nested in tuples, lists,
    dicts and slices too)."""
    if isinstance(obj, (tuple, list)):
        return type(obj)(_const_value(program, o) for o in obj)
    if isinstance(obj, dict):
        return {k: _const_value(program, v) for k, v in obj.items()}
    if isinstance(obj, slice):
        return slice(*_const_value(program, (obj.start, obj.stop, obj.step)))
    if not isinstance(obj, Ref):
        return obj
    step = program.steps[obj.index]
    if step.kind is not StepKind.CONST:
        raise UnsupportedOpError(step.op, step.name, step.module, "weights computed from the input")
    return step.fn(*_const_value(program, step.args), **_const_value(program, step.kwargs))


def _resolve_functional(program: Program) -> None:
    """Turn ``F.linear``/``F.conv*``/``F.layer_norm``/``F.group_norm`` calls with constant weights into
    affine and frozen steps."""
    for step in program.steps:
        if step.kind is StepKind.FROZEN_FN:
            fn = step.fn
            names = linearize.FUNCTIONS[fn]
            bound = {
                k: _const_value(program, v) for k, v in (dict(zip(names, step.args)) | step.kwargs).items() if k != "input"
            }
            step.frozen = linearize.from_function(fn, bound)
            step.kind, step.rule_name = StepKind.FROZEN, step.frozen.name
            step.args, step.kwargs = (step.args[0],), {}
            continue
        if step.kind is not StepKind.AFFINE_FN:
            continue
        names = ["input", "weight", "bias", "stride", "padding", "dilation", "groups"]
        bound = dict(zip(names, step.args))
        bound.update(step.kwargs)
        weight = _const_value(program, bound["weight"]).detach()
        bias = _const_value(program, bound.get("bias"))
        if step.affine_type == "Linear":
            step.affine = Affine(weight, bias, "linear")
        else:
            def tup(v: Any, default: int, nd: int = weight.ndim - 2) -> tuple[int, ...]:
                v = default if v is None else v
                return tuple(v) if isinstance(v, (tuple, list)) else (int(v),) * nd

            padding = bound.get("padding", 0)
            if isinstance(padding, str):
                raise UnsupportedOpError(step.op, step.name, step.module, "string padding in functional conv")
            step.affine = Affine(
                weight, bias, "conv",
                stride=tup(bound.get("stride"), 1), padding=tup(padding, 0),
                dilation=tup(bound.get("dilation"), 1), groups=int(bound.get("groups", 1) or 1),
            )  # fmt: skip
        step.kind = StepKind.AFFINE
        step.args = (bound["input"],)
        step.kwargs = {}
        step.fn = lambda x, a=step.affine: a.forward(x, None, a.bias)


# --------------------------------------------------------------------------- 5: analysis


def analyse(program: Program) -> Analysis:
    """The composite-independent facts the engine needs of ``program`` (see :class:`Analysis`)."""
    steps = program.steps
    users: dict[int, list[tuple[int, int]]] = {s.index: [] for s in steps}
    last_use = [-1] * len(steps)
    for s in steps:
        if s.kind is StepKind.DEAD:
            continue
        for j, a in enumerate(s.args):
            for r in refs_in(a):
                users[r.index].append((s.index, j))
        for r in s.refs():
            last_use[r.index] = s.index
    live = [s.live for s in steps]
    plain_adds = frozenset(
        s.index for s in steps
        if s.kind is StepKind.NORM and s.fn in (operator.add, torch.add) and not s.kwargs and len(s.args) == 2
        and all(program.is_live_ref(a) for a in s.args)
    )  # fmt: skip
    const_operands: dict[int, list[int]] = {}
    for s in steps:
        if s.kind is StepKind.NORM and s.op.split(".")[-1] in ("add", "sub", "iadd", "isub"):
            consts = [j for j in (0, 1) if j < len(s.args) and not program.is_live_ref(s.args[j])]
            if consts:
                const_operands[s.index] = consts
    move_consts = frozenset(
        s.index for s in steps if s.kind is StepKind.MOVE and any(not live[r.index] for r in s.refs())
    )
    pools = {s.index: pool for s in steps if s.kind is StepKind.MOVE and (pool := _pool_with_indices(s))}
    return Analysis(users, last_use, live, plain_adds, const_operands, move_consts, pools)


_MAX_POOLS = {
    torch.nn.MaxPool1d: F.max_pool1d, torch.nn.MaxPool2d: F.max_pool2d, torch.nn.MaxPool3d: F.max_pool3d,
}  # fmt: skip
_ADAPTIVE_MAX_POOLS = {
    torch.nn.AdaptiveMaxPool1d: F.adaptive_max_pool1d, torch.nn.AdaptiveMaxPool2d: F.adaptive_max_pool2d,
    torch.nn.AdaptiveMaxPool3d: F.adaptive_max_pool3d,
}  # fmt: skip
#: functional max pooling → the number of positional arguments before ``return_indices``
_POOL_FUNCTIONS = {F.max_pool1d: 6, F.max_pool2d: 6, F.max_pool3d: 6, F.adaptive_max_pool1d: 2,
                   F.adaptive_max_pool2d: 2, F.adaptive_max_pool3d: 2}  # fmt: skip


def _pool_with_indices(s: Step) -> Callable[[Any, Any], tuple[Tensor, Tensor]] | None:
    """``(args, kwargs) -> (output, argmax indices)`` for a max pooling step, else None."""
    if s.rule_name != "winner_takes_all":
        return None
    fn = s.fn
    if type(fn) in _MAX_POOLS:
        pool = _MAX_POOLS[type(fn)]
        return lambda a, k: pool(  # type: ignore[operator]
            a[0], fn.kernel_size, fn.stride, fn.padding, fn.dilation, ceil_mode=fn.ceil_mode, return_indices=True
        )
    if type(fn) in _ADAPTIVE_MAX_POOLS:
        adaptive = _ADAPTIVE_MAX_POOLS[type(fn)]
        return lambda a, k: adaptive(a[0], fn.output_size, return_indices=True)  # type: ignore[operator]
    n_before = _POOL_FUNCTIONS.get(fn)  # type: ignore[call-overload]
    if n_before is None or len(s.args) > n_before or s.kwargs.get("return_indices"):
        return None
    return lambda a, k: fn(*a, **{**k, "return_indices": True})
