"""The canonized graph the engine runs both ways: steps, their kinds, and the error for what it cannot.

A :class:`Program` is a list of :class:`Step` in execution order. Each step has a
:class:`StepKind` that says how relevance passes through it; the kind also carries the title
``lrp inspect`` groups steps under and, for steps whose rule the composite does not choose, the
reason shown beside them. :mod:`lrpcli.core.graph` classifies the traced nodes,
:mod:`lrpcli.core.canonize` finishes the program (folding, functional layers, analysis).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    from .layers import Affine
    from .linearize import Linearized

__all__ = ["Analysis", "Program", "Ref", "Step", "StepKind", "UnsupportedOpError", "refs_in", "resolve"]


class UnsupportedOpError(NotImplementedError):
    """The engine cannot propagate relevance through an operation of the model."""

    def __init__(self, op: str, node: str, module: str | None, hint: str = "") -> None:
        where = f" in module {module!r}" if module else ""
        msg = f"cannot propagate relevance through {op} (graph node {node!r}{where})"
        if hint:
            msg += f": {hint}"
        super().__init__(msg)
        self.op, self.node, self.module = op, node, module


class StepKind(str, Enum):
    """How relevance passes through a step, with its ``lrp inspect`` title and fixed-rule reason."""

    title: str
    reason: str

    def __new__(cls, value: str, title: str, reason: str) -> StepKind:
        obj = str.__new__(cls, value)
        obj._value_ = value
        obj.title = title
        obj.reason = reason
        return obj

    def __str__(self) -> str:
        return self.value

    AFFINE = ("affine", "conv/dense layers (composite rules)", "the composite's rule")
    FROZEN = ("frozen", "LayerNorm/GroupNorm/attention (σ or weights held constant)",
              "σ or the attention weights held constant; ε-rule on the affine rest")  # fmt: skip
    NORM = ("norm", "sum nodes (additions, average pooling, means)", "sum node: split by contribution")
    MIX = ("mix", "attention weights × values", "attention weights × values: ε-rule on the values")
    GATE = ("gate", "signal × gate products", "signal × gate: all to the signal")
    PASS = ("pass", "element-wise (relevance passes)", "element-wise: relevance passes unchanged")
    MOVE = ("move", "data movement and max pooling", "data movement: relevance moves with the values")
    SELECT = ("select", "picks from multi-output nodes", "data movement: relevance moves with the values")
    STAT = ("stat", "statistics feeding only gates or frozen weights",
            "feeds only gates or frozen weights: never receives relevance")  # fmt: skip
    INPUT = ("input", "input", "the pixels")
    CONST = ("const", "constants", "input-independent: no relevance")
    OUTPUT = ("output", "output", "the explained logits")
    DEAD = ("dead", "folded away", "folded into another step by canonization")
    META = ("meta", "shape queries", "no tensor result")
    # transient kinds, resolved by canonization once the constant weights are known
    AFFINE_FN = ("affine_fn", "functional conv/dense", "resolved to an affine step")
    FROZEN_FN = ("frozen_fn", "functional LayerNorm/GroupNorm", "resolved to a frozen step")
    BATCHNORM = ("batchnorm", "BatchNorm (module or F.batch_norm)",
                 "folded into the layer before it, or made a per-channel affine step")  # fmt: skip


#: kinds that hold no signal: never computed from the input, never given relevance
INERT_KINDS = frozenset({StepKind.CONST, StepKind.DEAD, StepKind.META})


@dataclass(eq=False)
class Ref:
    """A reference to another step's value inside a step's arguments."""

    index: int


@dataclass(eq=False)
class Step:
    """One node of the canonized graph."""

    index: int
    name: str
    kind: StepKind
    op: str
    module: str | None
    fn: Callable[..., Any]
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    affine: Affine | None = None
    affine_type: str = ""  # module class for affine steps, e.g. "Conv2d"
    rule_name: str = ""  # fixed rule for non-affine steps ("pass", "norm", "winner_takes_all", ...)
    gate_arg: int = -1  # for gate and mix steps: position of the gate operand
    frozen: Linearized | None = None  # for frozen steps: the op with its constant factor
    error: UnsupportedOpError | None = None  # for stat steps: why relevance cannot pass
    notes: list[str] = field(default_factory=list)  # canonizations applied to this step

    def refs(self) -> list[Ref]:
        """All step references among the arguments, in order."""
        return refs_in((self.args, self.kwargs))

    @property
    def live(self) -> bool:
        """Whether the step computes a signal (depends on the input)."""
        return self.kind not in INERT_KINDS


def refs_in(obj: Any) -> list[Ref]:
    """The step references inside ``obj`` (nested tuples, lists, dicts and slices), in order."""
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
    elif isinstance(obj, slice):
        _collect((obj.start, obj.stop, obj.step), out)


def resolve(obj: Any, env: list[Any]) -> Any:
    """``obj`` with every :class:`Ref` replaced by its value in ``env`` (nested tuples, lists, dicts, slices)."""
    if isinstance(obj, Ref):
        return env[obj.index]
    if isinstance(obj, tuple):
        return tuple(resolve(o, env) for o in obj)
    if isinstance(obj, list):
        return [resolve(o, env) for o in obj]
    if isinstance(obj, dict):
        return {k: resolve(v, env) for k, v in obj.items()}
    if isinstance(obj, slice):  # x[:, :h] with h read from a shape
        return slice(resolve(obj.start, env), resolve(obj.stop, env), resolve(obj.step, env))
    return obj


@dataclass(frozen=True)
class Analysis:
    """What the engine needs to know of a program whatever the composite (computed once).

    ``users[i]``: ``(user step, argument position)`` of every use of step ``i``'s value;
    ``last_use[i]``: the last step reading it (the forward pass frees it there); ``live[i]``:
    whether step ``i`` computes a signal; ``plain_adds``:
    ``x + y`` of two signals (relevance splits as ``x·s`` and ``y·s``); ``const_operands``: the
    constant operand positions of additions/subtractions (they act as a bias);
    ``move_consts``: data movement with a constant operand (a class token); ``pools``: max
    pooling steps that can return the winners' indices, as ``(args, kwargs) -> (output, indices)``.
    """

    users: dict[int, list[tuple[int, int]]]
    last_use: list[int]
    live: list[bool]
    plain_adds: frozenset[int]
    const_operands: dict[int, list[int]]
    move_consts: frozenset[int]
    pools: dict[int, Callable[[Any, Any], Any]]


@dataclass
class Program:
    """The canonized graph of a model: steps in execution order, and their analysis."""

    steps: list[Step]
    input_index: int
    output_index: int
    canonizations: list[str]
    analysis: Analysis | None = None

    def affine_steps(self) -> list[Step]:
        """Affine steps in execution order."""
        return [s for s in self.steps if s.kind is StepKind.AFFINE]

    def is_live_ref(self, obj: Any) -> bool:
        """Whether ``obj`` refers to a step that computes a signal."""
        return isinstance(obj, Ref) and self.steps[obj.index].live
