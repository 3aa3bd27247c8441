"""torch.fx tracing with concrete values: models whose Python control flow reads tensor shapes.

:func:`trace_with_values` traces a module symbolically, as :func:`torch.fx.symbolic_trace` does,
while also running every recorded operation on an example input. Where the module's Python code
needs a real value of a traced tensor (``if height % window != 0``, ``if x.dtype != w.dtype``,
``int(size)``, ``len(shape)``, unpacking or iterating a shape) it gets the example's value, and
that branch is fixed in the graph; everything else stays symbolic. The graph is therefore
specialised to the example's spatial size, dtype and the module's eval/train mode, but not to
its batch size as long as the code keeps the batch dimension a traced value (Hugging Face
``transformers`` models do; :mod:`lrpcli.models.huggingface_source` checks the result on another
batch size). Control flow on the *data* of a tensor (``if x.max() > 0``) is refused.

The result is an ordinary :class:`torch.fx.GraphModule` (no control flow left), which the engine's
plain :func:`torch.fx.symbolic_trace` traces again without help.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
import torch.fx as fx
from torch import nn
from torch.fx._symbolic_trace import _orig_module_call, _orig_module_getattr
from torch.fx.proxy import Attribute, TraceError

__all__ = ["ConcreteTracer", "trace_with_values"]

_MISSING = object()


def concrete_value(obj: Any) -> Any:
    """The example value behind a proxy (``obj`` itself if it is not one)."""
    if not isinstance(obj, fx.Proxy):
        return obj
    value = obj.__dict__.get("_concrete", _MISSING)
    if value is _MISSING and isinstance(obj, Attribute):
        value = getattr(concrete_value(obj.root), obj.attr)
        obj.__dict__["_concrete"] = value
    if value is _MISSING:
        raise TraceError(f"no example value for {obj.node.name!r}")
    return value


def _plain(value: Any, what: str) -> Any:
    """``value`` if it is not a tensor: Python code may branch on shapes, not on tensor data."""
    if isinstance(value, torch.Tensor):
        raise TraceError(
            f"{what} of a tensor computed from the input: the model's Python code depends on the "
            "data, not only on shapes, and cannot be traced into one graph"
        )
    return value


class _ValueMixin:
    """What a proxy answers from its example value: ``len``, ``int``, ``float``, indexing."""

    def __getattr__(self, k: str) -> Attribute:
        return _ValueAttribute(self, k)  # type: ignore[arg-type]

    def __len__(self) -> int:
        return len(_plain(concrete_value(self), "len()"))

    def __index__(self) -> int:
        return int(_plain(concrete_value(self), "an index"))

    def __int__(self) -> int:
        return int(_plain(concrete_value(self), "int()"))

    def __float__(self) -> float:
        return float(_plain(concrete_value(self), "float()"))


class _ValueProxy(_ValueMixin, fx.Proxy):
    """A proxy with the example value of its node."""


class _ValueAttribute(_ValueMixin, Attribute):
    """An attribute of a proxy (``x.shape``, ``x.dtype``) with its example value."""


class ConcreteTracer(fx.Tracer):
    """A tracer whose proxies carry the values of ``example`` run through the traced code.

    Leaf modules are torch's own (as for :func:`torch.fx.symbolic_trace`); every other module
    is traced through. Truth values, iteration, ``len`` and integer conversion of a proxy use
    the example's value when it is not a tensor, and raise :class:`TraceError` when it is.
    """

    def __init__(self, example: torch.Tensor) -> None:
        super().__init__()
        self.example = example

    def proxy(self, node: fx.Node) -> fx.Proxy:
        return _ValueProxy(node, self)

    def create_proxy(  # type: ignore[override]
        self,
        kind: str,
        target: Any,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        name: str | None = None,
        type_expr: Any | None = None,
        proxy_factory_fn: Any = None,
    ) -> fx.Proxy:
        proxy = super().create_proxy(kind, target, args, kwargs, name, type_expr, proxy_factory_fn)
        proxy.__dict__["_concrete"] = self._run(kind, target, args, kwargs)
        return proxy

    def _run(self, kind: str, target: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """The example value of one node: its operation on its arguments' example values."""
        if kind == "placeholder":
            return self.example
        a = fx.node.map_aggregate(args, concrete_value)
        k = fx.node.map_aggregate(kwargs, concrete_value)
        with torch.no_grad():
            if kind == "call_function":
                return target(*a, **k)
            if kind == "call_method":
                return getattr(a[0], target)(*a[1:], **k)
            if kind == "call_module":  # torch's own leaf modules, run without fx's patches
                return _orig_module_call(self.root.get_submodule(target), *a, **k)
            if kind == "get_attr":
                value: Any = self.root
                for part in str(target).split("."):
                    value = _orig_module_getattr(value, part) if isinstance(value, nn.Module) else getattr(value, part)
                return value
        return None

    def to_bool(self, obj: fx.Proxy) -> bool:
        return bool(_plain(concrete_value(obj), "the truth value"))

    def iter(self, obj: fx.Proxy) -> Iterator[Any]:
        value = _plain(concrete_value(obj), "iteration")
        return iter([obj[i] for i in range(len(value))])


def trace_with_values(root: nn.Module, example: torch.Tensor) -> fx.Graph:
    """The graph of ``root.forward(example)``, traced with :class:`ConcreteTracer` (``root``'s
    train/eval mode as it is). The graph records no tracer class, so a :class:`~torch.fx.GraphModule`
    built from it pickles and copies like one from :func:`torch.fx.symbolic_trace`."""
    graph = ConcreteTracer(example).trace(root)
    graph._tracer_cls = None  # unpickling re-traces the generated code with a plain tracer
    return graph
