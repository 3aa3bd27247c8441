"""Trace a model with torch.fx and classify every node into a step the engine can run both ways.

Each graph node becomes a :class:`Step` of one kind:

``affine``   convolution / dense layer (BatchNorm and zero padding folded in) — gets a rule;
             also a BatchNorm that cannot be folded, as a per-channel affine map (ε-rule)
``batchnorm`` an eval-mode BatchNorm module or ``F.batch_norm`` with constant statistics, until
             canonization folds it into the layer before it or makes it ``affine``
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
``input`` / ``const`` / ``output``; forward() arguments after the input that have a plain default
(timm ViT's ``attn_mask=None``) are traced as that constant

Anything else raises :class:`UnsupportedOpError` naming the op, the node and the module path.
:mod:`lrpcli.core.canonize` turns the classified steps into a finished :class:`Program`.
The model itself is never modified: tracing happens on a temporary eval-mode view and every
module's train/eval flag is restored.

Long because every node kind is classified here, each by the same op tables and the same
liveness of its arguments (functional BatchNorm and fused attention included); apart, each
piece would need both handed in.
"""

from __future__ import annotations

import inspect
import operator
from typing import Any, Callable

import torch
import torch.fx as fx
import torch.nn as nn
import torch.nn.functional as F

from . import linearize
from .layers import from_module
from .ops import (
    AFFINE_MODULES,
    BATCHNORM_MODULES,
    ELEMENTWISE_MODULES,
    FUNCTION_TABLE,
    GATE_FUNCTIONS,
    GATE_METHODS,
    GATE_MODULES,
    INPLACE_FUNCTIONS,
    MAX_MODULES,
    METHOD_TABLE,
    MIX_FUNCTIONS,
    MIX_METHODS,
    MOVE_MODULES,
    NORM_MODULES,
    SCALE_FUNCTIONS,
    SCALE_METHODS,
    STOCHASTIC_DEPTH,
    TRANSPARENT_METHODS,
    batchnorm_eval,
    dropout_free,
    lookup,
    out_of_place_module,
    register_torchvision,
)
from .program import Ref, Step, StepKind, UnsupportedOpError

# --- operation tables -----------------------------------------------------------------------

def _module_path(node: fx.Node) -> str | None:
    if node.op == "call_module":
        return str(node.target)
    stack = node.meta.get("nn_module_stack")
    if stack:
        return str(list(stack.values())[-1][0])
    return None


def optional_arguments(model: nn.Module) -> dict[str, Any]:
    """The arguments of ``model.forward`` after the input that have a plain default (``None``, a
    bool, number or text, e.g. timm ViT's ``attn_mask=None``): traced as those constants."""
    try:
        params = list(inspect.signature(model.forward).parameters.values())
    except (TypeError, ValueError):  # a builtin or otherwise unintrospectable forward
        return {}
    plain = (bool, int, float, str)
    return {
        p.name: p.default for p in params[1:]
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
        and (p.default is None or (p.default is not p.empty and isinstance(p.default, plain)))
    }  # fmt: skip


def trace(model: nn.Module) -> fx.GraphModule:
    """Symbolically trace ``model`` in eval mode, its optional arguments fixed at their defaults
    (:func:`optional_arguments`); every module's mode is restored afterwards."""
    register_torchvision()
    modes = {m: m.training for m in model.modules()}
    try:
        model.eval()
        return fx.symbolic_trace(model, concrete_args=optional_arguments(model) or None)
    except Exception as exc:  # fx raises many kinds of errors for untraceable code
        raise UnsupportedOpError(
            "the model's forward", "<trace>", type(model).__name__,
            f"torch.fx could not trace it ({type(exc).__name__}: {exc}); data-dependent Python control flow "
            "is the usual cause — move it out of forward() or into a leaf module",
        ) from exc  # fmt: skip
    finally:
        for m, training in modes.items():
            m.training = training


def classify_model(model: nn.Module) -> tuple[list[Step], int, int, dict[str, nn.Module]]:
    """Trace ``model`` and classify every node: ``(steps, input index, output index, modules)``.

    Raises :class:`UnsupportedOpError` for an operation relevance would have to pass through
    but has no rule.
    """
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
        step = Step(i, node.name, StepKind.CONST, str(node.target), path, _identity, args, dict(kwargs))
        if node.op == "placeholder" and input_index >= 0:
            if not node.args:  # torch.fx records a parameter's default as the placeholder's argument
                raise UnsupportedOpError(
                    f"a second input {node.name!r}", node.name, None,
                    "models with one input tensor only (further forward() arguments need a default)",
                )  # fmt: skip
            default = node.args[0]
            step.fn, step.op = (lambda v=default: v), f"argument {node.target} = {default!r} (its default)"
            step.args = ()
        elif node.op == "placeholder":
            input_index = i
            live.add(node)
            step.kind, step.op = StepKind.INPUT, "input"
        elif node.op == "get_attr":
            target = str(node.target)
            value = _fetch_attr(gm, target)
            step.fn = lambda v=value: v
            step.op = f"attribute {target}"
        elif node.op == "output":
            output_index = i
            step.kind, step.op, step.fn = StepKind.OUTPUT, "output", _identity
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
                step.kind, step.error = StepKind.STAT, exc
            if step.kind is not StepKind.META:
                live.add(node)
            else:
                step.kind = StepKind.CONST
        steps.append(step)

    if input_index < 0 or output_index < 0:
        raise UnsupportedOpError("a graph without input or output", "<graph>", None)
    _check_relevance_paths(steps, output_index)
    return steps, input_index, output_index, modules


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
            return batchnorm_eval(mod)
        return out_of_place_module(mod)
    if node.op == "call_method":
        name = str(node.target)
        if name.endswith("_") and not name.endswith("__") and hasattr(torch.Tensor, name[:-1]):
            name = name[:-1]
        return lambda self, *a, **k: getattr(self, name)(*a, **k)
    fn = INPLACE_FUNCTIONS.get(node.target, node.target)  # type: ignore[call-overload]
    fn = dropout_free(fn)
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
            step.kind, step.affine_type = StepKind.AFFINE, type(mod).__name__
            step.fn = lambda x, a=step.affine: a.forward(x, None, a.bias)
        elif isinstance(mod, BATCHNORM_MODULES):  # folded or made affine by canonization
            step.kind = StepKind.BATCHNORM
        elif isinstance(mod, ELEMENTWISE_MODULES):
            step.kind, step.rule_name = StepKind.PASS, "pass"
        elif isinstance(mod, MOVE_MODULES):
            step.kind, step.rule_name = StepKind.MOVE, "move"
        elif isinstance(mod, MAX_MODULES):
            step.kind, step.rule_name = StepKind.MOVE, "winner_takes_all"
        elif isinstance(mod, NORM_MODULES):
            step.kind, step.rule_name = StepKind.NORM, "norm"
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
        found = lookup(name, METHOD_TABLE)
        if found is not None:
            step.kind, step.rule_name = found
        elif name in SCALE_METHODS:
            _classify_product(step, node, modules, live_args)
        elif name == "pow" and live_args == [0]:  # x ** c (StarReLU's relu(x)²): element-wise
            step.kind, step.rule_name = StepKind.PASS, "pass"
        elif name in MIX_METHODS and _classify_mix(step, node, modules, live_args):
            pass
        else:
            raise UnsupportedOpError(
                f"Tensor.{node.target}", node.name, step.module, "no LRP rule for this tensor method"
            )
        return
    # call_function
    fn = INPLACE_FUNCTIONS.get(node.target, node.target)  # type: ignore[call-overload]
    found = lookup(fn, FUNCTION_TABLE)
    if fn is operator.getitem:
        src = node.args[0]
        if isinstance(src, fx.Node) and _returns_sequence(src, modules):
            step.kind, step.rule_name = StepKind.SELECT, "move"
        else:
            step.kind, step.rule_name = StepKind.MOVE, "move"
    elif found is not None:
        step.kind, step.rule_name = found
    elif fn in STOCHASTIC_DEPTH:
        training = node.args[3] if len(node.args) > 3 else node.kwargs.get("training", True)
        if training is not False:
            raise UnsupportedOpError(
                "stochastic_depth in training mode", node.name, step.module, "call it with training=False (eval mode)"
            )
        step.kind, step.rule_name = StepKind.PASS, "pass"
    elif fn in linearize.FUNCTIONS and live_args == [0] and not any(
        is_live(a) for a in list(node.args[1:]) + list(node.kwargs.values())
    ):
        step.kind = StepKind.FROZEN_FN  # resolved to a Linearized once the constant weights are known
    elif fn in (operator.pow, torch.pow) and live_args == [0] and not is_live(node.kwargs):
        step.kind, step.rule_name = StepKind.PASS, "pass"  # x ** c with a constant exponent: element-wise
    elif fn is F.batch_norm:
        _classify_batch_norm(step, node, is_live)
    elif fn is F.scaled_dot_product_attention:
        _classify_sdpa(step, node, is_live)
    elif fn in SCALE_FUNCTIONS:
        _classify_product(step, node, modules, live_args)
    elif fn in MIX_FUNCTIONS and _classify_mix(step, node, modules, live_args):
        pass
    elif fn in (F.linear, F.conv1d, F.conv2d, F.conv3d) and live_args == [0] and not any(
        is_live(a) for a in list(node.args[1:]) + list(node.kwargs.values())
    ):
        step.kind = StepKind.AFFINE_FN  # resolved to an Affine once constant weights are known
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
    step.kind, step.rule_name = StepKind.FROZEN, step.frozen.name  # type: ignore[union-attr]
    step.kwargs = {}


#: ``F.batch_norm``'s parameters, in order
BATCH_NORM_ARGS = ("input", "running_mean", "running_var", "weight", "bias", "training", "momentum", "eps")
_SDPA_ARGS = ("query", "key", "value", "attn_mask", "dropout_p", "is_causal", "scale", "enable_gqa")


def _classify_batch_norm(step: Step, node: fx.Node, is_live: Callable[[Any], bool]) -> None:
    """``F.batch_norm`` in eval mode with constant statistics (timm's ``BatchNormAct2d``): a
    BatchNorm that canonization folds like the module."""
    bound = dict(zip(BATCH_NORM_ARGS, node.args)) | dict(node.kwargs)
    if bound.get("training", False) is not False:
        raise UnsupportedOpError(
            "batch_norm in training mode", node.name, step.module,
            "it normalises with the batch's own statistics; call it with training=False (eval mode)",
        )  # fmt: skip
    computed = [k for k in BATCH_NORM_ARGS[1:5] if is_live(bound.get(k))]
    if computed or bound.get("running_mean") is None or bound.get("running_var") is None:
        raise UnsupportedOpError(
            "batch_norm with statistics computed from the input", node.name, step.module,
            "only BatchNorm with fixed running statistics, weight and bias is an affine map",
        )  # fmt: skip
    step.kind = StepKind.BATCHNORM


def _classify_sdpa(step: Step, node: fx.Node, is_live: Callable[[Any], bool]) -> None:
    """``F.scaled_dot_product_attention``: the softmax weights held constant, relevance to the values."""
    raw = dict(zip(_SDPA_ARGS, node.args)) | dict(node.kwargs)
    bound = dict(zip(_SDPA_ARGS, step.args)) | step.kwargs
    if not is_live(raw.get("value")):
        raise UnsupportedOpError(
            "scaled_dot_product_attention with constant values", node.name, step.module,
            "relevance reaches the input through the values only",
        )  # fmt: skip
    options = {k: bound.get(k, d) for k, d in (("dropout_p", 0.0), ("is_causal", False), ("scale", None),
                                              ("enable_gqa", False))}  # fmt: skip
    computed = [k for k, v in options.items() if isinstance(v, Ref)]
    if computed:
        raise UnsupportedOpError(
            "scaled_dot_product_attention with computed options", node.name, step.module,
            f"{', '.join(computed)} must be constants",
        )  # fmt: skip
    if options["dropout_p"]:
        raise UnsupportedOpError(
            "scaled_dot_product_attention with dropout", node.name, step.module,
            f"dropout_p={options['dropout_p']} makes the output random; call it with dropout_p=0 in eval mode",
        )  # fmt: skip
    step.frozen = linearize.ScaledDotProductAttentionLin(options["is_causal"], options["scale"], options["enable_gqa"])
    step.kind, step.rule_name = StepKind.FROZEN, step.frozen.name
    step.args, step.kwargs = (bound["query"], bound["key"], bound["value"], bound.get("attn_mask")), {}


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
        if s.kind in (StepKind.GATE, StepKind.MIX):
            refs = [r for j, r in enumerate(s.args) if isinstance(r, Ref) and j != s.gate_arg]
        elif s.kind is StepKind.FROZEN and s.frozen is not None:
            refs = [s.args[s.frozen.signal]]
        todo.extend(r.index for r in refs)
    for s in steps:
        if s.kind is StepKind.STAT and s.index in reached and s.error is not None:
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




def _classify_mix(step: Step, node: fx.Node, modules: dict[str, nn.Module], live_args: list[int]) -> bool:
    """Attention weights × values (einsum/matmul with a softmax operand): linear in the values."""
    if len(live_args) != 2:
        return False
    gates = [j for j in live_args if _is_gate_node(node.args[j], modules)]
    if len(gates) != 1:
        return False
    step.kind, step.rule_name, step.gate_arg = StepKind.MIX, "mix", gates[0]
    return True


def _classify_product(step: Step, node: fx.Node, modules: dict[str, nn.Module], live_args: list[int]) -> None:
    name = step.op.split(".")[-1]
    if len(live_args) <= 1:
        if name in ("truediv", "div") and live_args != [0]:
            raise UnsupportedOpError(
                f"division by a signal ({step.op})", node.name, step.module, "only division by constants is linear"
            )
        step.kind, step.rule_name = StepKind.PASS, "pass"
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
    step.kind, step.rule_name, step.gate_arg = StepKind.GATE, "gate", gates[0]
