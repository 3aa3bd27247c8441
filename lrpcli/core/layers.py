"""Affine layers as the engine sees them: a forward and a transposed pass for any weight.

A convolution or dense layer, after canonization, is an :class:`Affine`: weights and bias
(BatchNorm possibly folded in) plus the geometry of the operation and an optional constant
zero padding that preceded it in the model. Rules call :meth:`Affine.forward` with modified
weights or inputs and :meth:`Affine.transpose` to send a signal back (``Wᵀ s``) — one
``convolution_backward`` call, never a re-run of the forward under autograd.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Literal, Protocol

import torch
import torch.nn.functional as F
from torch import Tensor

Kind = Literal["conv", "linear", "scale"]


class BatchNormStats(Protocol):
    """What folding reads of an eval-mode BatchNorm: an ``nn.BatchNorm*d`` or :class:`FunctionalBatchNorm`."""

    @property
    def running_mean(self) -> Tensor | None: ...

    @property
    def running_var(self) -> Tensor | None: ...

    @property
    def weight(self) -> Tensor | None: ...

    @property
    def bias(self) -> Tensor | None: ...

    @property
    def eps(self) -> float: ...


@dataclass(frozen=True)
class FunctionalBatchNorm:
    """The constant arguments of an ``F.batch_norm(x, mean, var, weight, bias, training=False, …, eps)``
    call (timm's ``BatchNormAct2d`` makes one), to fold like a BatchNorm module."""

    running_mean: Tensor | None
    running_var: Tensor | None
    weight: Tensor | None
    bias: Tensor | None
    eps: float = 1e-5


class Affine:
    """``z = pad(x) * W + b`` (convolution, 1-3 spatial dims), ``z = x Wᵀ + b`` (dense layer) or
    ``z = w ⊙ x + b`` per channel (``scale``: a BatchNorm that could not be folded)."""

    def __init__(
        self,
        weight: Tensor,
        bias: Tensor | None,
        kind: Kind,
        *,
        stride: tuple[int, ...] = (),
        padding: tuple[int, ...] = (),
        dilation: tuple[int, ...] = (),
        groups: int = 1,
        pre_pad: tuple[int, ...] | None = None,
    ) -> None:
        self.weight = weight.detach()
        self.bias = None if bias is None else bias.detach()
        self.kind = kind
        self.stride = stride
        self.padding = padding
        self.dilation = dilation
        self.groups = groups
        self.pre_pad = pre_pad
        #: the graph guarantees a non-negative input (e.g. it comes from a ReLU)
        self.input_nonneg = False
        self._cache: dict[object, Tensor] = {}

    def with_params(self, weight: Tensor, bias: Tensor | None) -> Affine:
        """The same layer geometry (kind, stride, padding, …) with other parameters."""
        return Affine(
            weight,
            bias,
            self.kind,
            stride=self.stride,
            padding=self.padding,
            dilation=self.dilation,
            groups=self.groups,
            pre_pad=self.pre_pad,
        )

    # -- derived weights, computed once per prepared model ------------------------------------
    def cached(self, key: object, make: Callable[[], Tensor]) -> Tensor:
        """Return ``make()`` computed once for ``key`` (weights are frozen while prepared)."""
        value = self._cache.get(key)
        if value is None:
            value = make()
            self._cache[key] = value
        return value

    @property
    def weight_pos(self) -> Tensor:
        """W⁺ = max(W, 0)."""
        return self.cached("w+", lambda: self.weight.clamp(min=0))

    @property
    def weight_neg(self) -> Tensor:
        """W⁻ = W − W⁺ (so that W⁺ + W⁻ is exactly W)."""
        return self.cached("w-", lambda: self.weight - self.weight_pos)

    def bias_or_zero(self) -> Tensor:
        """The bias, or zeros when the layer has none."""
        if self.bias is not None:
            return self.bias
        return self.cached("b0", lambda: self.weight.new_zeros(self.weight.shape[0]))

    def bias_view(self, bias: Tensor, ndim: int) -> Tensor:
        """``bias`` shaped to broadcast against an output with ``ndim`` dimensions."""
        if self.kind == "linear":
            return bias
        return bias.view(1, -1, *([1] * (ndim - 2)))

    # -- passes --------------------------------------------------------------------------------
    def forward(self, x: Tensor, weight: Tensor | None = None, bias: Tensor | None = None) -> Tensor:
        """The layer's operation with the given weight (default: its own) and bias (default: none)."""
        w = self.weight if weight is None else weight
        if self.kind == "linear":
            return F.linear(x, w, bias)
        if self.kind == "scale":
            z = x * self.bias_view(w, x.ndim)
            return z if bias is None else z + self.bias_view(bias, x.ndim)
        if self.pre_pad is not None:
            x = F.pad(x, self.pre_pad)
        if self._shifted(x, w):
            return _depthwise_forward(x, w, bias, self.stride, self.padding, self.dilation)
        return torch.ops.aten.convolution(
            x, w, bias, self.stride, self.padding, self.dilation, False, [0] * len(self.stride), self.groups
        )

    def transpose(self, signal: Tensor, input_shape: torch.Size, weight: Tensor | None = None) -> Tensor:
        """``Wᵀ signal``: the adjoint of :meth:`forward` (without bias), shaped like the layer input."""
        w = self.weight if weight is None else weight
        if self.kind == "linear":
            return signal.matmul(w)
        if self.kind == "scale":
            return signal * self.bias_view(w, signal.ndim)
        shape = list(input_shape)
        if self.pre_pad is not None:
            pads = self.pre_pad
            for i in range(len(pads) // 2):
                shape[-1 - i] += pads[2 * i] + pads[2 * i + 1]
        if self._shifted(signal, w):
            grad = _depthwise_transpose(signal, w, shape, self.stride, self.padding, self.dilation)
            return grad if self.pre_pad is None else F.pad(grad, [-p for p in self.pre_pad])
        placeholder = signal.new_empty(shape)  # only its shape is read; an expanded one costs a full copy
        grad = torch.ops.aten.convolution_backward(
            signal,
            placeholder,
            w,
            None,
            self.stride,
            self.padding,
            self.dilation,
            False,
            [0] * len(self.stride),
            self.groups,
            (True, False, False),
        )[0]
        if self.pre_pad is not None:
            grad = F.pad(grad, [-p for p in self.pre_pad])
        return grad

    def _shifted(self, t: Tensor, w: Tensor) -> bool:
        """Whether to run a 2-d depthwise convolution as shifted products (:func:`_depthwise_forward`):
        in float64 on the CPU, where PyTorch has no depthwise kernel and loops over the channels,
        one small convolution each: 2–7 times slower than this with one thread on EfficientNet's
        layers, and up to 15 times slower again with two threads on a busy machine, where each
        of those thousands of small convolutions waits for both threads."""
        return (
            t.dtype == torch.float64
            and t.device.type == "cpu"
            and w.ndim == 4
            and w.shape[1] == 1
            and w.shape[0] == self.groups > 1
        )

    def describe(self) -> str:
        """A short human description, e.g. ``conv 3→64 k3 s1``."""
        w = self.weight
        if self.kind == "linear":
            return f"linear {w.shape[1]}→{w.shape[0]}"
        if self.kind == "scale":
            return f"per-channel scale and shift ({w.shape[0]} channels)"
        k = "x".join(str(s) for s in w.shape[2:])
        return f"conv {w.shape[1] * self.groups}→{w.shape[0]} k{k} s{max(self.stride)} g{self.groups}"


def _span(size: int, out: int, offset: int, stride: int) -> tuple[slice, int, int]:
    """For one tap along one axis, reading input ``i·stride + offset`` at output ``i``: the outputs
    whose input lies inside ``0 .. size-1`` (as a slice), the first input read and how many."""
    lo = max(0, -(offset // stride))  # the first i with i·stride + offset >= 0
    hi = max(lo, min(out, (size - 1 - offset) // stride + 1))
    return slice(lo, hi), lo * stride + offset, hi - lo


def _taps(
    size: tuple[int, int], out: tuple[int, int], weight: Tensor, stride: tuple[int, ...], padding: tuple[int, ...],
    dilation: tuple[int, ...],
) -> list[tuple[slice, slice, int, int, slice, slice, Tensor]]:  # fmt: skip
    """Per kernel tap: the output window it reaches (rows, cols), the input phase it reads
    (``first % stride`` per axis), the window of that phase, and its weight shaped ``(1, C, 1, 1)``.
    Taps over the zero padding are clipped away, so the input is never padded."""
    (kh, kw), (sh, sw) = weight.shape[2:], stride
    taps = []
    for a in range(kh):
        rows, r0, nr = _span(size[0], out[0], a * dilation[0] - padding[0], sh)
        for b in range(kw):
            cols, c0, nc = _span(size[1], out[1], b * dilation[1] - padding[1], sw)
            if nr and nc:
                win_r, win_c = slice(r0 // sh, r0 // sh + nr), slice(c0 // sw, c0 // sw + nc)
                taps.append((rows, cols, r0 % sh, c0 % sw, win_r, win_c, weight[:, 0, a, b].view(1, -1, 1, 1)))
    return taps


def _out_size(size: tuple[int, int], weight: Tensor, stride: tuple[int, ...], padding: tuple[int, ...],
              dilation: tuple[int, ...]) -> tuple[int, int]:  # fmt: skip
    k = weight.shape[2:]
    return tuple((size[d] + 2 * padding[d] - dilation[d] * (k[d] - 1) - 1) // stride[d] + 1 for d in range(2))  # type: ignore[return-value]


def _depthwise_forward(
    x: Tensor, weight: Tensor, bias: Tensor | None, stride: tuple[int, ...], padding: tuple[int, ...],
    dilation: tuple[int, ...],
) -> Tensor:  # fmt: skip
    """A 2-d depthwise convolution (``groups`` = channels, one weight per channel and tap) as a
    sum of shifted products, one per kernel tap. With a stride, the input is first split into
    its ``s_h·s_w`` phases (``x[..., i::s_h, j::s_w]``), so that every tap reads a contiguous window."""
    sh, sw = stride
    out = _out_size(tuple(x.shape[2:]), weight, stride, padding, dilation)  # type: ignore[arg-type]
    phases = {(0, 0): x} if sh == sw == 1 else {(i, j): x[:, :, i::sh, j::sw].contiguous() for i in range(sh) for j in range(sw)}
    z = x.new_zeros(x.shape[0], weight.shape[0], *out)
    for rows, cols, i, j, win_r, win_c, w in _taps(tuple(x.shape[2:]), out, weight, stride, padding, dilation):  # type: ignore[arg-type]
        z[:, :, rows, cols].addcmul_(phases[i, j][:, :, win_r, win_c], w)
    return z if bias is None else z.add_(bias.view(1, -1, 1, 1))


def _depthwise_transpose(
    signal: Tensor, weight: Tensor, shape: list[int], stride: tuple[int, ...], padding: tuple[int, ...],
    dilation: tuple[int, ...],
) -> Tensor:  # fmt: skip
    """The adjoint of :func:`_depthwise_forward`, for an input of ``shape``."""
    n, c, h, w = shape
    sh, sw = stride
    out = tuple(signal.shape[2:])
    if sh == sw == 1:
        grad = signal.new_zeros(n, c, h, w)
        phases = {(0, 0): grad}
    else:
        phases = {(i, j): signal.new_zeros(n, c, -(-(h - i) // sh), -(-(w - j) // sw)) for i in range(sh) for j in range(sw)}
    for rows, cols, i, j, win_r, win_c, wt in _taps((h, w), out, weight, stride, padding, dilation):  # type: ignore[arg-type]
        phases[i, j][:, :, win_r, win_c].addcmul_(signal[:, :, rows, cols], wt)
    if sh == sw == 1:
        return grad
    grad = signal.new_empty(n, c, h, w)
    for (i, j), part in phases.items():
        grad[:, :, i::sh, j::sw] = part
    return grad


def from_module(module: torch.nn.Module) -> Affine:
    """Build an :class:`Affine` from an ``nn.Linear`` or ``nn.Conv1d/2d/3d``."""
    if isinstance(module, torch.nn.Linear):
        return Affine(module.weight, module.bias, "linear")
    if isinstance(module, (torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d)):
        nd = module.weight.ndim - 2
        pre_pad: tuple[int, ...] | None = None
        padding = module.padding
        if isinstance(padding, str):
            if padding == "valid":
                padding = (0,) * nd
            else:  # "same": total padding d*(k-1) per dim, extra pixel at the end like PyTorch
                pads: list[int] = []
                for d, k in zip(reversed(module.dilation), reversed(module.kernel_size)):
                    total = d * (k - 1)
                    pads += [total // 2, total - total // 2]
                pre_pad, padding = tuple(pads), (0,) * nd
        if module.padding_mode != "zeros":
            raise NotImplementedError(
                f"convolution with padding_mode={module.padding_mode!r} is not supported; "
                "use padding_mode='zeros' or an explicit padding module"
            )
        return Affine(
            module.weight,
            module.bias,
            "conv",
            stride=tuple(module.stride),
            padding=tuple(padding),
            dilation=tuple(module.dilation),
            groups=module.groups,
            pre_pad=pre_pad,
        )
    raise TypeError(f"not an affine layer: {type(module).__name__}")


def batchnorm_scale(bn: BatchNormStats) -> tuple[Tensor, Tensor]:
    """An eval-mode BatchNorm as ``y = scale·x + shift`` per channel.

    ``scale = γ/√(σ²+ε)``, ``shift = (0 − μ)·scale + β``, in the order of operations Zennit's
    merge uses, so that folded weights agree with it bit for bit.
    """
    if bn.running_mean is None or bn.running_var is None:
        raise ValueError("BatchNorm without running statistics (track_running_stats=False) has no fixed affine map")
    denominator = (bn.running_var.detach() + bn.eps) ** 0.5
    scale = 1.0 / denominator if bn.weight is None else bn.weight.detach() / denominator
    shift = (0.0 - bn.running_mean.detach()) * scale
    if bn.bias is not None:
        shift = shift + bn.bias.detach()
    return scale, shift


def from_batchnorm(bn: BatchNormStats) -> Affine:
    """A BatchNorm that cannot be folded, as a per-channel affine layer."""
    scale, shift = batchnorm_scale(bn)
    return Affine(scale, shift, "scale")


def fold_batchnorm(layer: Affine, bn: BatchNormStats) -> Affine:
    """Fold an eval-mode BatchNorm that follows ``layer`` into new weights and bias."""
    scale, _ = batchnorm_scale(bn)
    assert bn.running_mean is not None  # batchnorm_scale checked it
    shape = (-1,) + (1,) * (layer.weight.ndim - 1)
    weight = layer.weight * scale.view(shape)
    bias = (layer.bias_or_zero() - bn.running_mean.detach()) * scale
    if bn.bias is not None:
        bias = bias + bn.bias.detach()
    return layer.with_params(weight, bias)
