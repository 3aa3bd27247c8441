"""Trace a model with torch.fx and canonize it into a list of steps the engine can run both ways.

Each graph node becomes a :class:`Step` of one kind:

``affine``   convolution / dense layer (BatchNorm and zero padding folded in) — gets a rule;
             also a BatchNorm that cannot be folded, as a per-channel affine map (ε-rule)
``norm``     parameter-free linear node (``+``, ``-``, average pooling, ``mean``, ``sum``)
``move``     pure data movement (flatten, view, permute, cat, chunk, slicing, padding, max pooling)
``pass``     element-wise layers whose relevance passes unchanged (activations, dropout, scaling)
``gate``     signal × gate product (squeeze-excitation): relevance goes to the signal
``frozen``   LayerNorm, GroupNorm, multi-head attention: affine once σ / the attention weights are
             held constant (:mod:`lrpcli.linearize`); ε-rule on that affine map
``mix``      product of attention weights (a softmax) and values (``einsum``, ``matmul``): the
             weights are held constant, ε-rule on the product as a linear map of the values
``stat``     a node that only feeds gates and frozen weights (``q·kᵀ``, the softmax): computed in
             the forward pass, never given relevance, so it needs no rule
``select``   picking one result of a multi-output node (``chunk(...)[i]``)
``input`` / ``const`` / ``output``

Anything else raises :class:`UnsupportedOpError` naming the op, the node and the module path.
The model itself is never modified: tracing happens on a temporary eval-mode view and every
module's train/eval flag is restored.
"""

from __future__ import annotations

import operator
import sys
import threading
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
import torch.fx as fx
import torch.nn as nn
import torch.nn.functional as F

from . import linearize
from .layers import Affine, fold_batchnorm, from_batchnorm, from_module
from .linearize import Linearized


class UnsupportedOpError(NotImplementedError):
    """The engine cannot propagate relevance through an operation of the model."""

    def __init__(self, op: str, node: str, module: str | None, hint: str = "") -> None:
        where = f" in module {module!r}" if module else ""
        msg = f"cannot propagate relevance through {op} (graph node {node!r}{where})"
        if hint:
            msg += f": {hint}"
        super().__init__(msg)
        self.op, self.node, self.module = op, node, module


@dataclass(eq=False)
class Ref:
    """A reference to another step's value inside a step's arguments."""

    index: int


@dataclass(eq=False)
class Step:
    """One node of the canonized graph."""

    index: int
    name: str
    kind: str
    op: str
    module: str | None
    fn: Callable[..., Any]
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    affine: Affine | None = None
    affine_type: str = ""  # module class for affine steps, e.g. "Conv2d"
    rule_name: str = ""  # fixed rule for non-affine steps ("pass", "norm", ...)
    gate_arg: int = -1  # for gate steps: position of the gate operand
    frozen: Linearized | None = None  # for frozen steps: the op with its constant factor
    error: UnsupportedOpError | None = None  # for stat steps: why relevance cannot pass
    notes: list[str] = field(default_factory=list)  # canonizations applied to this step

    def refs(self) -> list[Ref]:
        """All step references among the arguments, in order."""
        return refs_in((self.args, self.kwargs))


def refs_in(obj: Any) -> list[Ref]:
    """The step references inside ``obj`` (nested tuples, lists and dicts), in order."""
    out: list[Ref] = []
    _collect(obj, out)
    return out


def _collect(obj: Any, out: list[Ref]) -> None:
    if isinstance(obj, Ref):
        out.append(obj)
    elif isinstance(obj, (tuple, list)):
        for o in obj:
            _collect(o, out)
    elif isinstance(obj, dict):
        for o in obj.values():
            _collect(o, out)


@dataclass
class Program:
    """The canonized graph of a model: steps in execution order."""

    steps: list[Step]
    input_index: int
    output_index: int
    canonizations: list[str]

    def affine_steps(self) -> list[Step]:
        """Affine steps in execution order."""
        return [s for s in self.steps if s.kind == "affine"]


# --- operation tables -----------------------------------------------------------------------

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
    torch.sigmoid, F.sigmoid, F.hardsigmoid, F.tanh, torch.clamp, torch.clip,
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
    "type_as", "detach", "hardswish", "silu",
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
METHOD_TABLE: list[tuple[set[Any], str, str]] = [
    (META_METHODS, "meta", ""), (PASS_METHODS, "pass", "pass"), (MOVE_METHODS, "move", "move"),
    (MAX_METHODS, "move", "winner_takes_all"), (NORM_METHODS, "norm", "norm"),
]  # fmt: skip
FUNCTION_TABLE: list[tuple[set[Any], str, str]] = [
    (NON_TENSOR_FUNCTIONS, "meta", ""), (ELEMENTWISE_FUNCTIONS, "pass", "pass"), (MOVE_FUNCTIONS, "move", "move"),
    (MAX_FUNCTIONS, "move", "winner_takes_all"), (NORM_FUNCTIONS, "norm", "norm"),
]  # fmt: skip


def _lookup(key: Any, table: list[tuple[set[Any], str, str]]) -> tuple[str, str] | None:
    for members, kind, rule in table:
        try:
            if key in members:
                return kind, rule
        except TypeError:  # unhashable target
            return None
    return None


def _module_path(node: fx.Node) -> str | None:
    if node.op == "call_module":
        return str(node.target)
    stack = node.meta.get("nn_module_stack")
    if stack:
        return str(list(stack.values())[-1][0])
    return None


def _out_of_place_module(mod: nn.Module) -> Callable[..., Any]:
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


def _batchnorm_eval(bn: nn.modules.batchnorm._BatchNorm) -> Callable[[torch.Tensor], torch.Tensor]:
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


def _dropout_free(fn: Callable[..., Any]) -> Callable[..., Any]:
    if fn in DROPOUT_FUNCTIONS:
        return lambda x, *a, **k: x
    return fn


def trace(model: nn.Module) -> fx.GraphModule:
    """Symbolically trace ``model`` in eval mode; every module's mode is restored afterwards."""
    register_torchvision()
    modes = {m: m.training for m in model.modules()}
    try:
        model.eval()
        return fx.symbolic_trace(model)
    except Exception as exc:  # fx raises many kinds of errors for untraceable code
        raise UnsupportedOpError(
            "the model's forward", "<trace>", type(model).__name__,
            f"torch.fx could not trace it ({type(exc).__name__}: {exc}); data-dependent Python control flow "
            "is the usual cause — move it out of forward() or into a leaf module",
        ) from exc  # fmt: skip
    finally:
        for m, training in modes.items():
            m.training = training


def build_program(model: nn.Module) -> Program:
    """Trace and canonize ``model`` into a :class:`Program`."""
    gm = trace(model)
    modules = dict(gm.named_modules())
    nodes = list(gm.graph.nodes)
    index = {n: i for i, n in enumerate(nodes)}
    live: set[fx.Node] = set()
    steps: list[Step] = []
    input_index = output_index = -1

    def conv(obj: Any) -> Any:
        return fx.node.map_arg(obj, lambda n: Ref(index[n]))  # type: ignore[arg-type]

    def is_live(obj: Any) -> bool:
        found: list[fx.Node] = []
        fx.node.map_arg(obj, lambda n: found.append(n))  # type: ignore[arg-type,func-returns-value]
        return any(n in live for n in found)

    for node in nodes:
        i = index[node]
        path = _module_path(node)
        args, kwargs = conv(node.args), conv(node.kwargs)
        step = Step(i, node.name, "const", str(node.target), path, _identity, args, dict(kwargs))
        if node.op == "placeholder":
            if input_index >= 0:
                raise UnsupportedOpError(
                    f"a second input {node.name!r}", node.name, None, "models with one input tensor only"
                )
            input_index = i
            live.add(node)
            step.kind, step.op = "input", "input"
        elif node.op == "get_attr":
            target = str(node.target)
            value = _fetch_attr(gm, target)
            step.fn = lambda v=value: v
            step.op = f"attribute {target}"
        elif node.op == "output":
            output_index = i
            step.kind, step.op, step.fn = "output", "output", _identity
            if not isinstance(node.args[0], fx.Node):
                raise UnsupportedOpError(
                    "a model output that is not a single tensor", node.name, None,
                    "wrap the model so that forward() returns the logits tensor only",
                )  # fmt: skip
        elif not is_live((node.args, node.kwargs)):
            step.fn = _callable(node, modules)
            step.op = _op_name(node, modules)
        else:
            try:
                _classify(step, node, modules, is_live)
            except UnsupportedOpError as exc:  # fatal only if relevance has to pass through it
                step.kind, step.error = "stat", exc
            if step.kind != "meta":
                live.add(node)
            else:
                step.kind = "const"
        steps.append(step)

    if input_index < 0 or output_index < 0:
        raise UnsupportedOpError("a graph without input or output", "<graph>", None)
    _check_relevance_paths(steps, output_index)
    program = Program(steps, input_index, output_index, [])
    _fold_padding(program)
    _fold_batchnorm(program, modules)
    _mark_nonnegative_inputs(program, modules)
    return program


NONNEG_OPS = {"ReLU", "ReLU6", "Sigmoid", "Hardsigmoid", "relu", "relu6", "sigmoid", "hardsigmoid",
              "Tensor.relu", "Tensor.sigmoid"}  # fmt: skip
SIGN_KEEPING_OPS = {"Dropout", "Dropout1d", "Dropout2d", "Dropout3d", "Identity", "dropout", "Tensor.contiguous",
                    "Tensor.clone", "Tensor.float", "Tensor.to", "add", "Tensor.add", "mean", "Tensor.mean", "sum",
                    "Tensor.sum"}  # fmt: skip


def _mark_nonnegative_inputs(program: Program, modules: dict[str, nn.Module]) -> None:
    """Tell affine layers whose input is provably ≥ 0 (after ReLU, max/avg pooling of it, ...)."""
    nonneg: set[int] = set()
    for s in program.steps:
        live = [r.index for r in s.refs() if program.steps[r.index].kind not in ("const", "dead")]
        mod = modules.get(s.module or "") if s.kind == "pass" else None
        if s.op in NONNEG_OPS or (isinstance(mod, nn.Hardtanh) and mod.min_val >= 0):
            nonneg.add(s.index)
        elif live and all(i in nonneg for i in live) and (
            s.kind in ("move", "select", "gate") or (s.kind in ("norm", "pass") and s.op in SIGN_KEEPING_OPS)
            or s.kind == "norm" and "Pool" in s.op or s.op.startswith(("avg_pool", "adaptive_avg"))
        ):
            nonneg.add(s.index)
        if s.kind == "affine" and s.affine is not None and s.args and isinstance(s.args[0], Ref):
            s.affine.input_nonneg = s.args[0].index in nonneg


def _identity(x: Any, *args: Any, **kwargs: Any) -> Any:
    return x


def _fetch_attr(gm: fx.GraphModule, target: str) -> Any:
    obj: Any = gm
    for part in target.split("."):
        obj = getattr(obj, part)
    return obj.detach() if isinstance(obj, torch.Tensor) else obj


def _op_name(node: fx.Node, modules: dict[str, nn.Module]) -> str:
    if node.op == "call_module":
        return type(modules[str(node.target)]).__name__
    if node.op == "call_method":
        return f"Tensor.{node.target}"
    t = node.target
    return getattr(t, "__name__", str(t))


def _callable(node: fx.Node, modules: dict[str, nn.Module]) -> Callable[..., Any]:
    if node.op == "call_module":
        mod = modules[str(node.target)]
        if isinstance(mod, BATCHNORM_MODULES):
            return _batchnorm_eval(mod)
        return _out_of_place_module(mod)
    if node.op == "call_method":
        name = str(node.target)
        if name.endswith("_") and not name.endswith("__") and hasattr(torch.Tensor, name[:-1]):
            name = name[:-1]
        return lambda self, *a, **k: getattr(self, name)(*a, **k)
    fn = INPLACE_FUNCTIONS.get(node.target, node.target)  # type: ignore[call-overload]
    fn = _dropout_free(fn)
    if "inplace" in node.kwargs:
        return lambda *a, **k: fn(*a, **{**k, "inplace": False})
    return fn  # type: ignore[return-value]


def _classify(step: Step, node: fx.Node, modules: dict[str, nn.Module], is_live: Callable[[Any], bool]) -> None:
    step.fn = _callable(node, modules)
    step.op = _op_name(node, modules)
    live_args = [j for j, a in enumerate(node.args) if is_live(a)]
    if node.op == "call_module":
        mod = modules[str(node.target)]
        if isinstance(mod, AFFINE_MODULES):
            try:
                step.affine = from_module(mod)
            except NotImplementedError as exc:
                raise UnsupportedOpError(step.op, node.name, step.module, str(exc)) from exc
            step.kind, step.affine_type = "affine", type(mod).__name__
            step.fn = lambda x, a=step.affine: a.forward(x, None, a.bias)
        elif isinstance(mod, BATCHNORM_MODULES + ELEMENTWISE_MODULES):  # BatchNorm: folded or made affine later
            step.kind, step.rule_name = "pass", "pass"
        elif isinstance(mod, MOVE_MODULES):
            step.kind, step.rule_name = "move", "move"
        elif isinstance(mod, MAX_MODULES):
            step.kind, step.rule_name = "move", "winner_takes_all"
        elif isinstance(mod, NORM_MODULES):
            step.kind, step.rule_name = "norm", "norm"
        elif isinstance(mod, linearize.MODULES):
            _classify_frozen(step, node, mod)
        else:
            raise UnsupportedOpError(
                f"module {type(mod).__name__}", node.name, step.module,
                "lrpcli has no rule for this layer type; replace it by standard layers or name it in an issue",
            )  # fmt: skip
        return
    if node.op == "call_method":
        name = str(node.target).rstrip("_")
        found = _lookup(name, METHOD_TABLE)
        if found is not None:
            step.kind, step.rule_name = found
        elif name in SCALE_METHODS:
            _classify_product(step, node, modules, live_args)
        elif name in MIX_METHODS and _classify_mix(step, node, modules, live_args):
            pass
        else:
            raise UnsupportedOpError(
                f"Tensor.{node.target}", node.name, step.module, "no LRP rule for this tensor method"
            )
        return
    # call_function
    fn = INPLACE_FUNCTIONS.get(node.target, node.target)  # type: ignore[call-overload]
    found = _lookup(fn, FUNCTION_TABLE)
    if fn is operator.getitem:
        src = node.args[0]
        if isinstance(src, fx.Node) and _returns_sequence(src, modules):
            step.kind, step.rule_name = "select", "move"
        else:
            step.kind, step.rule_name = "move", "move"
    elif found is not None:
        step.kind, step.rule_name = found
    elif fn in STOCHASTIC_DEPTH:
        training = node.args[3] if len(node.args) > 3 else node.kwargs.get("training", True)
        if training is not False:
            raise UnsupportedOpError(
                "stochastic_depth in training mode", node.name, step.module, "call it with training=False (eval mode)"
            )
        step.kind, step.rule_name = "pass", "pass"
    elif fn in linearize.FUNCTIONS and live_args == [0] and not any(
        is_live(a) for a in list(node.args[1:]) + list(node.kwargs.values())
    ):
        step.kind = "frozen_fn"  # resolved to a Linearized once the constant weights are known
    elif fn in SCALE_FUNCTIONS:
        _classify_product(step, node, modules, live_args)
    elif fn in MIX_FUNCTIONS and _classify_mix(step, node, modules, live_args):
        pass
    elif fn in (F.linear, F.conv1d, F.conv2d, F.conv3d) and live_args == [0] and not any(
        is_live(a) for a in list(node.args[1:]) + list(node.kwargs.values())
    ):
        step.kind = "affine_fn"  # resolved to an Affine once constant weights are known
        step.affine_type = "Linear" if fn is F.linear else f"Conv{fn.__name__[-2:]}"
    else:
        raise UnsupportedOpError(
            f"function {getattr(fn, '__name__', fn)}", node.name, step.module,
            "no LRP rule for this operation; if it is element-wise, linear or data movement, please report it",
        )  # fmt: skip


def _classify_frozen(step: Step, node: fx.Node, mod: nn.Module) -> None:
    if isinstance(mod, nn.MultiheadAttention):
        names = ("query", "key", "value", "key_padding_mask", "need_weights", "attn_mask")
        bound = dict(zip(names, node.args)) | dict(node.kwargs)
        masks = [k for k in ("key_padding_mask", "attn_mask") if bound.get(k) is not None]
        if masks or bound.get("is_causal"):
            raise UnsupportedOpError(
                "MultiheadAttention with a mask", node.name, step.module,
                f"masked attention ({', '.join(masks) or 'is_causal'}) is not supported; call it without masks",
            )  # fmt: skip
        if len(node.args) < 3:
            raise UnsupportedOpError(
                "MultiheadAttention called with keywords", node.name, step.module,
                "pass query, key and value positionally",
            )  # fmt: skip
    try:
        step.frozen = linearize.from_module(mod)
    except NotImplementedError as exc:
        raise UnsupportedOpError(step.op, node.name, step.module, str(exc)) from exc
    step.kind, step.rule_name = "frozen", step.frozen.name  # type: ignore[union-attr]
    step.kwargs = {}


def _returns_sequence(node: fx.Node, modules: dict[str, nn.Module]) -> bool:
    if node.op == "call_module":
        return isinstance(modules[str(node.target)], nn.MultiheadAttention)
    if node.op == "call_function":
        return node.target in (torch.chunk, torch.split, torch.unbind)
    if node.op == "call_method":
        return str(node.target) in ("chunk", "split", "unbind")
    return False


def _check_relevance_paths(steps: list[Step], output_index: int) -> None:
    """Raise the error of the first step relevance must pass through but has no rule for.

    Relevance never enters a gate operand, a frozen step's statistics, or attention weights; steps
    that only feed those (``q·kᵀ``, the softmax) keep kind ``stat``: computed, never explained.
    """
    reached: set[int] = set()
    todo = [r.index for r in steps[output_index].refs()]
    while todo:
        i = todo.pop()
        if i in reached:
            continue
        reached.add(i)
        s = steps[i]
        refs = s.refs()
        if s.kind in ("gate", "mix"):
            refs = [r for j, r in enumerate(s.args) if isinstance(r, Ref) and j != s.gate_arg]
        elif s.kind == "frozen" and s.frozen is not None:
            refs = [s.args[s.frozen.signal]]
        todo.extend(r.index for r in refs)
    for s in steps:
        if s.kind == "stat" and s.index in reached and s.error is not None:
            raise s.error


def _is_gate_node(node: Any, modules: dict[str, nn.Module]) -> bool:
    if not isinstance(node, fx.Node):
        return False
    if _is_transparent(node, modules):  # attention dropout, reshapes between the softmax and its use
        return _is_gate_node(node.args[0], modules)
    if node.op == "call_module":
        return isinstance(modules[str(node.target)], GATE_MODULES)
    if node.op == "call_function":
        return node.target in GATE_FUNCTIONS
    if node.op == "call_method":
        return str(node.target).rstrip("_") in GATE_METHODS
    return False


TRANSPARENT_METHODS = {"contiguous", "view", "reshape", "transpose", "permute", "to", "float", "unsqueeze"}


def _is_transparent(node: fx.Node, modules: dict[str, nn.Module]) -> bool:
    """Dropout, identity or a reshape: a gate seen through it is still a gate."""
    if not node.args or not isinstance(node.args[0], fx.Node):
        return False
    if node.op == "call_module":
        mod = modules[str(node.target)]
        return isinstance(mod, (nn.Dropout, nn.Identity))
    if node.op == "call_function":
        return node.target in (F.dropout, torch.reshape, torch.transpose, torch.permute, torch.unsqueeze)
    return node.op == "call_method" and str(node.target) in TRANSPARENT_METHODS


MIX_FUNCTIONS = {torch.einsum, torch.matmul, torch.bmm, operator.matmul}
MIX_METHODS = {"matmul", "bmm"}


def _classify_mix(step: Step, node: fx.Node, modules: dict[str, nn.Module], live_args: list[int]) -> bool:
    """Attention weights × values (einsum/matmul with a softmax operand): linear in the values."""
    if len(live_args) != 2:
        return False
    gates = [j for j in live_args if _is_gate_node(node.args[j], modules)]
    if len(gates) != 1:
        return False
    step.kind, step.rule_name, step.gate_arg = "mix", "mix", gates[0]
    return True


def _classify_product(step: Step, node: fx.Node, modules: dict[str, nn.Module], live_args: list[int]) -> None:
    name = step.op.split(".")[-1]
    if len(live_args) <= 1:
        if name in ("truediv", "div") and live_args != [0]:
            raise UnsupportedOpError(
                f"division by a signal ({step.op})", node.name, step.module, "only division by constants is linear"
            )
        step.kind, step.rule_name = "pass", "pass"
        return
    if name not in ("mul",):
        raise UnsupportedOpError(
            f"{step.op} of two signals", node.name, step.module, "only products signal × gate are supported"
        )
    gates = [j for j in live_args if _is_gate_node(node.args[j], modules)]
    if len(gates) != 1:
        raise UnsupportedOpError(
            f"product of two signals ({step.op})", node.name, step.module,
            "lrpcli explains products only as signal × gate, where the gate comes from a sigmoid, hard-sigmoid, "
            "tanh or softmax; relevance then goes to the signal",
        )  # fmt: skip
    step.kind, step.rule_name, step.gate_arg = "gate", "gate", gates[0]


def _users(program: Program) -> dict[int, list[int]]:
    users: dict[int, list[int]] = {s.index: [] for s in program.steps}
    for s in program.steps:
        for r in s.refs():
            users[r.index].append(s.index)
    return users


def _replace_refs(obj: Any, old: int, new: int) -> Any:
    if isinstance(obj, Ref):
        return Ref(new) if obj.index == old else obj
    if isinstance(obj, tuple):
        return tuple(_replace_refs(o, old, new) for o in obj)
    if isinstance(obj, list):
        return [_replace_refs(o, old, new) for o in obj]
    if isinstance(obj, dict):
        return {k: _replace_refs(v, old, new) for k, v in obj.items()}
    return obj


def _zero_pad(step: Step, modules_fn: Any) -> tuple[int, ...] | None:
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
        if step.kind != "affine" or step.affine is None or step.affine.kind != "conv":
            continue
        src = program.steps[step.args[0].index]
        if src.kind != "move" or users[src.index] != [step.index]:
            continue
        pad = _zero_pad(src, None)
        nd = len(step.affine.stride)
        if pad is None or len(pad) > 2 * nd:
            continue
        pad = tuple(pad) + (0,) * (2 * nd - len(pad))
        if step.affine.pre_pad is not None:
            pad = tuple(a + b for a, b in zip(pad, step.affine.pre_pad))
        step.affine.pre_pad = pad
        step.args = (src.args[0],) + step.args[1:]
        src.kind, src.args, src.kwargs = "dead", (), {}
        note = f"folded padding {src.name} {list(pad)} into {step.module or step.name}"
        step.notes.append(note)
        program.canonizations.append(note)


def _fold_batchnorm(program: Program, modules: dict[str, nn.Module]) -> None:
    """Fold each eval-mode BatchNorm that directly follows a conv/dense layer (its only user) into it."""
    users = _users(program)
    for step in program.steps:
        if step.kind != "pass" or step.module is None or not isinstance(modules.get(step.module), BATCHNORM_MODULES):
            continue
        bn = modules[step.module]
        src = program.steps[step.args[0].index] if step.args and isinstance(step.args[0], Ref) else None
        if src is None or src.kind != "affine" or src.affine is None or src.affine.kind == "scale" or (
            users[src.index] != [step.index]
        ):
            try:
                step.affine = from_batchnorm(bn)  # type: ignore[arg-type]
            except ValueError as exc:
                raise UnsupportedOpError(step.op, step.name, step.module, str(exc)) from exc
            step.kind, step.affine_type, step.rule_name = "affine", type(bn).__name__, ""
            step.fn = lambda x, a=step.affine: a.forward(x, None, a.bias)
            note = f"{step.module}: BatchNorm not directly after a conv/dense layer, kept as a per-channel affine layer"
            step.notes.append(note)
            program.canonizations.append(note)
            continue
        folded = fold_batchnorm(src.affine, bn)  # type: ignore[arg-type]
        step.kind, step.affine, step.affine_type, step.rule_name = "affine", folded, src.affine_type, ""
        step.fn = lambda x, a=folded: a.forward(x, None, a.bias)
        step.args = src.args
        step.op = f"{src.affine_type}+{type(bn).__name__}"
        note = f"folded {step.module} into {src.module}"
        step.notes = src.notes + [note]
        step.module = src.module
        src.kind, src.args, src.kwargs = "dead", (), {}
        program.canonizations.append(note)
