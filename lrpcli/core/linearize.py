"""Layers that become affine maps of their input once an input-dependent factor is held constant.

LayerNorm and GroupNorm divide by a standard deviation computed from the input; multi-head
attention weights its values by a softmax of the input. LRP for such layers (Ali et al. 2022,
"XAI for Transformers: Better Explanations through Conservative Propagation"; Achtibat et al.
2024, AttnLRP / LXT) freezes that factor at its forward value. What remains is affine in the
signal, ``y = L x + b``, and the engine applies the ε-rule to it::

    s = R / stab(y)      R_x = x ⊙ Lᵀ s      absorbed by the bias: Σ s ⊙ b,  b = y(x = 0)

Mean-centering stays linear (it moves relevance between positions and conserves it); only the
learned shift β (and attention's projection biases) absorbs relevance. For attention, the
queries and keys receive no relevance: it all flows through the values.
"""

from __future__ import annotations

import inspect
import math
from abc import ABC, abstractmethod
from typing import Any, Callable

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor
from torch.overrides import TorchFunctionMode


class Linearized(ABC):
    """An op that is affine in its signal given frozen statistics of the forward pass."""

    #: short name used in rule tables and ledgers
    name: str
    #: what is held constant, for ``lrp inspect``
    frozen: str
    #: position of the signal among the op's arguments
    signal: int = 0

    def run(self, args: tuple[Any, ...], bias_free: bool) -> tuple[Tensor, Any]:
        """The output for the op's call arguments, and the statistics to freeze."""
        return self.forward(args[0], bias_free)

    def result(self, y: Tensor, state: Any) -> Any:
        """What the op returns to the rest of the graph."""
        return y

    @abstractmethod
    def forward(self, x: Tensor, bias_free: bool) -> tuple[Tensor, Any]:
        """The op's output and the statistics to freeze."""

    @abstractmethod
    def apply(self, x: Tensor, state: Any, bias_free: bool) -> Tensor:
        """The affine map with ``state`` frozen (differentiable in ``x``); equals ``forward`` at its input."""

    def describe(self) -> str:
        return f"{self.name}({self.frozen} constant)"


def _rstd(centred: Tensor, dims: tuple[int, ...], eps: float) -> Tensor:
    return torch.rsqrt(centred.pow(2).mean(dims, keepdim=True) + eps)


class LayerNormLin(Linearized):
    """``(x − mean) / σ · γ + β`` over the trailing ``normalized_shape`` dimensions, σ frozen."""

    name = "layer_norm"
    frozen = "1/σ"

    def __init__(self, shape: tuple[int, ...], weight: Tensor | None, bias: Tensor | None, eps: float) -> None:
        self.dims = tuple(range(-len(shape), 0))
        self.weight, self.bias, self.eps = weight, bias, float(eps)

    def _scale_shift(self, y: Tensor, bias_free: bool) -> Tensor:
        if self.weight is not None:
            y = y * self.weight
        if self.bias is not None and not bias_free:
            y = y + self.bias
        return y

    def forward(self, x: Tensor, bias_free: bool) -> tuple[Tensor, Any]:
        centred = x - x.mean(self.dims, keepdim=True)
        rstd = _rstd(centred, self.dims, self.eps)
        return self._scale_shift(centred * rstd, bias_free), rstd

    def apply(self, x: Tensor, state: Any, bias_free: bool) -> Tensor:
        return self._scale_shift((x - x.mean(self.dims, keepdim=True)) * state, bias_free)


class RMSNormLin(Linearized):
    """``x / rms(x) · γ`` over the trailing ``normalized_shape`` dimensions (``F.rms_norm``), 1/rms frozen."""

    name = "rms_norm"
    frozen = "1/rms"

    def __init__(self, shape: tuple[int, ...], weight: Tensor | None, eps: float | None) -> None:
        self.dims = tuple(range(-len(shape), 0))
        self.weight, self.eps = weight, eps

    def forward(self, x: Tensor, bias_free: bool) -> tuple[Tensor, Any]:
        eps = torch.finfo(x.dtype).eps if self.eps is None else self.eps
        rrms = torch.rsqrt(x.pow(2).mean(self.dims, keepdim=True) + eps)
        return self.apply(x, rrms, bias_free), rrms

    def apply(self, x: Tensor, state: Any, bias_free: bool) -> Tensor:
        y = x * state
        return y if self.weight is None else y * self.weight


class GroupNormLin(Linearized):
    """GroupNorm: per-sample, per-group centring and scaling, σ frozen; then per-channel γ, β."""

    name = "group_norm"
    frozen = "1/σ"

    def __init__(self, groups: int, weight: Tensor | None, bias: Tensor | None, eps: float) -> None:
        self.groups, self.weight, self.bias, self.eps = int(groups), weight, bias, float(eps)

    def _grouped(self, x: Tensor) -> Tensor:
        return x.reshape(x.shape[0], self.groups, -1)

    def _scale_shift(self, y: Tensor, shape: torch.Size, bias_free: bool) -> Tensor:
        y = y.reshape(shape)
        view = (1, -1) + (1,) * (len(shape) - 2)
        if self.weight is not None:
            y = y * self.weight.view(view)
        if self.bias is not None and not bias_free:
            y = y + self.bias.view(view)
        return y

    def forward(self, x: Tensor, bias_free: bool) -> tuple[Tensor, Any]:
        g = self._grouped(x)
        centred = g - g.mean(2, keepdim=True)
        rstd = _rstd(centred, (2,), self.eps)
        return self._scale_shift(centred * rstd, x.shape, bias_free), rstd

    def apply(self, x: Tensor, state: Any, bias_free: bool) -> Tensor:
        g = self._grouped(x)
        return self._scale_shift((g - g.mean(2, keepdim=True)) * state, x.shape, bias_free)


class AttentionLin(Linearized):
    """``nn.MultiheadAttention`` (self- or cross-attention, no masks): softmax weights frozen.

    ``y = W_o (A (W_v v + b_v)) + b_o`` is affine in the values ``v``; queries and keys only
    shape ``A`` and receive no relevance.
    """

    name = "attention"
    frozen = "softmax(QKᵀ/√d)"
    signal = 2

    def __init__(self, mod: nn.MultiheadAttention) -> None:
        if not mod._qkv_same_embed_dim:
            raise NotImplementedError("MultiheadAttention with kdim/vdim different from embed_dim")
        if mod.bias_k is not None or mod.add_zero_attn:
            raise NotImplementedError("MultiheadAttention with add_bias_kv or add_zero_attn")
        self.heads, self.batch_first = mod.num_heads, mod.batch_first
        self.wq, self.wk, self.wv = mod.in_proj_weight.detach().chunk(3)
        b = mod.in_proj_bias
        self.bq, self.bk, self.bv = (None, None, None) if b is None else b.detach().chunk(3)
        self.wo = mod.out_proj.weight.detach()
        self.bo = None if mod.out_proj.bias is None else mod.out_proj.bias.detach()

    def _heads(self, t: Tensor) -> Tensor:  # (N, L, E) -> (N, h, L, E/h)
        n, length, e = t.shape
        return t.reshape(n, length, self.heads, e // self.heads).transpose(1, 2)

    def _batch_first(self, t: Tensor) -> Tensor:
        return t if self.batch_first else t.transpose(0, 1)

    def _mix(self, value: Tensor, attn: Tensor, bias_free: bool) -> Tensor:
        v = self._heads(F.linear(self._batch_first(value), self.wv, None if bias_free else self.bv))
        out = (attn @ v).transpose(1, 2).flatten(2)
        out = F.linear(out, self.wo, None if bias_free else self.bo)
        return self._batch_first(out)

    def forward_qkv(self, query: Tensor, key: Tensor, value: Tensor, bias_free: bool) -> tuple[Tensor, Any]:
        """Output and frozen attention weights for separate query, key and value tensors."""
        q = self._heads(F.linear(self._batch_first(query), self.wq, None if bias_free else self.bq))
        k = self._heads(F.linear(self._batch_first(key), self.wk, None if bias_free else self.bk))
        attn = torch.softmax(q @ k.transpose(-2, -1) / q.shape[-1] ** 0.5, dim=-1)
        return self._mix(value, attn, bias_free), attn

    def forward(self, x: Tensor, bias_free: bool) -> tuple[Tensor, Any]:
        return self.forward_qkv(x, x, x, bias_free)

    def run(self, args: tuple[Any, ...], bias_free: bool) -> tuple[Tensor, Any]:
        return self.forward_qkv(args[0], args[1], args[2], bias_free)

    def result(self, y: Tensor, state: Any) -> Any:
        return y, state.mean(1)  # like nn.MultiheadAttention: (output, head-averaged weights)

    def apply(self, x: Tensor, state: Any, bias_free: bool) -> Tensor:
        return self._mix(x, state, bias_free)


class ScaledDotProductAttentionLin(Linearized):
    """``F.scaled_dot_product_attention(q, k, v, attn_mask)`` (timm's fused attention), softmax weights frozen.

    ``y = softmax(q kᵀ · scale + mask) v`` is linear in the values; the weights are computed
    explicitly (the math of PyTorch's reference implementation), so they can be kept and reused.
    The call's arguments are ``(query, key, value, attn_mask)``.
    """

    name = "attention"
    frozen = "softmax(QKᵀ·scale + mask)"
    signal = 2

    def __init__(self, is_causal: bool, scale: float | None, enable_gqa: bool) -> None:
        self.is_causal, self.scale, self.enable_gqa = bool(is_causal), scale, bool(enable_gqa)

    def _shared(self, t: Tensor, heads: int) -> Tensor:
        """Keys or values repeated to the query heads (grouped-query attention)."""
        if not self.enable_gqa or t.shape[-3] == heads:
            return t
        return t.repeat_interleave(heads // t.shape[-3], dim=-3)

    def weights(self, q: Tensor, k: Tensor, mask: Tensor | None) -> Tensor:
        """The attention weights of the forward pass."""
        k = self._shared(k, q.shape[-3]) if q.ndim >= 3 else k
        scale = self.scale if self.scale is not None else 1.0 / math.sqrt(q.shape[-1])
        logits = (q @ k.transpose(-2, -1)) * scale
        if self.is_causal:
            keep = torch.ones(q.shape[-2], k.shape[-2], dtype=torch.bool, device=q.device).tril()
            logits = logits.masked_fill(~keep, float("-inf"))
        if mask is not None:
            logits = logits.masked_fill(~mask, float("-inf")) if mask.dtype == torch.bool else logits + mask
        return torch.softmax(logits, dim=-1)

    def run(self, args: tuple[Any, ...], bias_free: bool) -> tuple[Tensor, Any]:
        q, k, v, mask = args
        attn = self.weights(q, k, mask)
        return self.apply(v, attn, bias_free), attn

    def forward(self, x: Tensor, bias_free: bool) -> tuple[Tensor, Any]:
        return self.run((x, x, x, None), bias_free)

    def apply(self, x: Tensor, state: Any, bias_free: bool) -> Tensor:
        return state @ (self._shared(x, state.shape[-3]) if x.ndim >= 3 else x)


_SOFTMAX = {F.softmax, torch.softmax, Tensor.softmax}


class _SoftmaxTape(TorchFunctionMode):
    """Records every softmax result (``replay=None``) or returns the recorded ones, in call order."""

    def __init__(self, replay: list[Tensor] | None = None) -> None:
        super().__init__()
        self.replay = replay
        self.recorded: list[Tensor] = []
        self.calls = 0

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        if func not in _SOFTMAX:
            return func(*args, **(kwargs or {}))
        self.calls += 1
        if self.replay is not None:
            return self.replay[self.calls - 1]
        out = func(*args, **(kwargs or {}))
        self.recorded.append(out.detach())
        return out


class SoftmaxFrozen(Linearized):
    """A fused attention function (e.g. Swin's ``shifted_window_attention``) with its softmax weights frozen.

    The function itself is re-run with every softmax call answered from the forward pass's
    record, which leaves it affine in its input; bias arguments are dropped for the bias-free network.
    """

    frozen = "softmax weights"

    def __init__(self, fn: Callable[..., Tensor], bound: dict[str, Any], biases: tuple[str, ...]) -> None:
        self.fn, self.bound, self.biases = fn, bound, biases
        self.name = getattr(fn, "__name__", "attention")

    def _call(self, x: Tensor, bias_free: bool) -> Tensor:
        kwargs = dict(self.bound)
        if bias_free:
            kwargs.update({b: None for b in self.biases})
        return self.fn(x, **kwargs)

    def forward(self, x: Tensor, bias_free: bool) -> tuple[Tensor, Any]:
        with _SoftmaxTape() as tape:
            y = self._call(x, bias_free)
        return y, tape.recorded

    def apply(self, x: Tensor, state: Any, bias_free: bool) -> Tensor:
        with _SoftmaxTape(replay=state):
            return self._call(x, bias_free)


#: fused attention functions (as torch.fx leaves) → the names of their bias arguments
ATTENTION_FUNCTIONS: dict[Callable[..., Any], tuple[str, ...]] = {}  # see add_attention_function()


def from_module(mod: nn.Module) -> Linearized | None:
    """The linearized form of a LayerNorm, GroupNorm, RMSNorm or MultiheadAttention module (else ``None``)."""
    if isinstance(mod, nn.LayerNorm):
        return LayerNormLin(tuple(mod.normalized_shape), _const(mod.weight), _const(mod.bias), mod.eps)
    if isinstance(mod, nn.GroupNorm):
        return GroupNormLin(mod.num_groups, _const(mod.weight), _const(mod.bias), mod.eps)
    if isinstance(mod, nn.RMSNorm):
        return RMSNormLin(tuple(mod.normalized_shape), _const(mod.weight), mod.eps)
    if isinstance(mod, nn.MultiheadAttention):
        return AttentionLin(mod)
    return None


def _const(t: Tensor | None) -> Tensor | None:
    return None if t is None else t.detach()


MODULES: tuple[type[nn.Module], ...] = (nn.LayerNorm, nn.GroupNorm, nn.RMSNorm, nn.MultiheadAttention)
FUNCTIONS: dict[Callable[..., Any], tuple[str, ...]] = {
    F.layer_norm: ("input", "normalized_shape", "weight", "bias", "eps"),
    F.group_norm: ("input", "num_groups", "weight", "bias", "eps"),
    F.rms_norm: ("input", "normalized_shape", "weight", "eps"),
}


def add_attention_function(fn: Callable[..., Any], bias_names: tuple[str, ...]) -> None:
    """Treat ``fn`` (a fused attention function, a torch.fx leaf) like the attention of
    :class:`SoftmaxFrozen`, with the bias arguments ``bias_names``; e.g. torchvision's swin
    ``shifted_window_attention`` (registered by :func:`lrpcli.graph.register_torchvision`)."""
    ATTENTION_FUNCTIONS[fn] = bias_names
    FUNCTIONS[fn] = tuple(inspect.signature(fn).parameters)


def from_function(fn: Any, bound: dict[str, Any]) -> Linearized:
    """The linearized form of ``F.layer_norm`` / ``F.rms_norm`` / ``F.group_norm`` / a fused attention function with
    constant arguments ``bound`` (all but the input)."""
    if fn in ATTENTION_FUNCTIONS:
        return SoftmaxFrozen(fn, bound, ATTENTION_FUNCTIONS[fn])
    if fn in (F.layer_norm, F.rms_norm):
        shape = bound["normalized_shape"]
        shape = (shape,) if isinstance(shape, int) else tuple(shape)
        if fn is F.rms_norm:
            return RMSNormLin(shape, bound.get("weight"), bound.get("eps"))
        return LayerNormLin(shape, bound.get("weight"), bound.get("bias"), bound.get("eps", 1e-5))
    return GroupNormLin(bound["num_groups"], bound.get("weight"), bound.get("bias"), bound.get("eps", 1e-5))
