"""Tests for lrpcli.core.layers: the affine layer's forward and transposed passes, and BatchNorm folding."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lrpcli.core.layers import Affine, batchnorm_scale, fold_batchnorm, from_batchnorm, from_module

DT = torch.float64

CONVS = {
    "plain": (nn.Conv2d(3, 4, 3), (3, 7, 6)),
    "stride_pad": (nn.Conv2d(3, 4, 3, stride=2, padding=1), (3, 7, 6)),
    "dilation_groups": (nn.Conv2d(4, 6, 3, padding=2, dilation=2, groups=2), (4, 6, 6)),
    "depthwise": (nn.Conv2d(4, 4, 3, padding=1, groups=4), (4, 5, 5)),
    "depthwise_stride": (nn.Conv2d(6, 6, 5, stride=2, padding=2, groups=6), (6, 9, 8)),
    "depthwise_dilation": (nn.Conv2d(3, 3, 3, padding=2, dilation=2, groups=3), (3, 7, 6)),
    "depthwise_multiplier": (nn.Conv2d(3, 6, 3, padding=1, groups=3), (3, 5, 5)),
    "same": (nn.Conv2d(3, 2, 4, padding="same"), (3, 6, 7)),
    "valid": (nn.Conv2d(3, 2, 3, padding="valid"), (3, 6, 7)),
    "conv1d": (nn.Conv1d(2, 3, 3, stride=2, padding=1), (2, 9)),
    "conv3d": (nn.Conv3d(2, 2, 3, padding=1), (2, 4, 4, 4)),
    "linear": (nn.Linear(7, 5), (7,)),
}


@pytest.mark.parametrize("name", sorted(CONVS))
def test_forward_equals_the_module_and_transpose_is_its_adjoint(name: str) -> None:
    torch.manual_seed(0)
    module, shape = CONVS[name]
    module = module.to(DT)
    layer = from_module(module)
    x = torch.randn(2, *shape, dtype=DT)
    with torch.no_grad():
        torch.testing.assert_close(layer.forward(x, None, layer.bias), module(x))
    y = torch.randn_like(layer.forward(x))
    # <W x, y> = <x, Wᵀ y>, and Wᵀ y is what autograd gives for the bias-free forward
    lhs = (layer.forward(x) * y).sum()
    back = layer.transpose(y, x.shape)
    assert back.shape == x.shape
    torch.testing.assert_close(lhs, (x * back).sum())
    leaf = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(layer.forward(leaf), leaf, y)
    torch.testing.assert_close(back, grad)


def test_pre_pad_is_part_of_the_layer() -> None:
    torch.manual_seed(1)
    conv = nn.Conv2d(3, 4, 3, stride=2).to(DT)
    layer = from_module(conv)
    layer.pre_pad = (0, 1, 0, 1)  # TensorFlow's asymmetric "SAME" in front of a strided conv
    x = torch.randn(2, 3, 6, 6, dtype=DT)
    with torch.no_grad():
        torch.testing.assert_close(layer.forward(x, None, layer.bias), conv(nn.functional.pad(x, (0, 1, 0, 1))))
    y = torch.randn_like(layer.forward(x))
    torch.testing.assert_close((layer.forward(x) * y).sum(), (x * layer.transpose(y, x.shape)).sum())


@pytest.mark.parametrize("k, stride, padding, dilation", [(1, 1, 0, 1), (3, 1, 1, 1), (3, 2, 1, 1), (5, 2, 2, 1),
                                                          (3, 3, 0, 1), (3, 2, 3, 2), (5, 1, 4, 2)])  # fmt: skip
@pytest.mark.parametrize("pre_pad", [None, (0, 1, 0, 1)])
def test_float64_depthwise_shifted_products_equal_pytorch(k: int, stride: int, padding: int, dilation: int, pre_pad) -> None:
    """Float64 depthwise convolutions on the CPU run as shifted products (PyTorch's own loops over
    channels): same output and same transposed pass as PyTorch's convolution, for odd sizes,
    strides, paddings wider than the kernel's reach, dilations and TensorFlow's asymmetric pad."""
    torch.manual_seed(2)
    conv = nn.Conv2d(5, 5, k, stride=stride, padding=padding, dilation=dilation, groups=5).to(DT)
    layer = from_module(conv)
    layer.pre_pad = pre_pad
    assert layer._shifted(torch.zeros(1, dtype=DT), layer.weight)
    assert not layer._shifted(torch.zeros(1), layer.weight.float())  # float32 keeps PyTorch's kernel
    for h, w in [(9, 8), (7, 7), (10, 11)]:
        x = torch.randn(2, 5, h, w, dtype=DT)
        padded = x if pre_pad is None else nn.functional.pad(x, pre_pad)
        with torch.no_grad():
            torch.testing.assert_close(layer.forward(x, None, layer.bias), conv(padded), rtol=0, atol=1e-12)
        y = torch.randn_like(conv(padded))
        leaf = x.clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(conv(leaf if pre_pad is None else nn.functional.pad(leaf, pre_pad)), leaf, y)
        torch.testing.assert_close(layer.transpose(y, x.shape), grad, rtol=0, atol=1e-12)


def test_weight_parts_split_the_weight_exactly() -> None:
    layer = from_module(nn.Conv2d(3, 4, 3).to(DT))
    assert bool((layer.weight_pos >= 0).all()) and bool((layer.weight_neg <= 0).all())
    assert torch.equal(layer.weight_pos + layer.weight_neg, layer.weight)
    assert layer.weight_pos is layer.weight_pos  # computed once while prepared


def test_cached_computes_once_per_key() -> None:
    layer = Affine(torch.ones(2, 3), None, "linear")
    calls = []
    make = lambda: calls.append(1) or torch.zeros(1)  # noqa: E731
    first = layer.cached("k", make)
    assert layer.cached("k", make) is first and len(calls) == 1
    assert torch.equal(layer.bias_or_zero(), torch.zeros(2))


def bn_with_statistics(channels: int, seed: int = 0) -> nn.BatchNorm2d:
    gen = torch.Generator().manual_seed(seed)
    bn = nn.BatchNorm2d(channels).to(DT).eval()
    with torch.no_grad():
        bn.running_mean.copy_(torch.randn(channels, generator=gen, dtype=DT))
        bn.running_var.copy_(torch.rand(channels, generator=gen, dtype=DT) + 0.5)
        bn.weight.copy_(torch.randn(channels, generator=gen, dtype=DT))
        bn.bias.copy_(torch.randn(channels, generator=gen, dtype=DT))
    return bn


def test_folded_batchnorm_equals_conv_then_batchnorm() -> None:
    torch.manual_seed(2)
    conv = nn.Conv2d(3, 4, 3, padding=1).to(DT)
    bn = bn_with_statistics(4)
    folded = fold_batchnorm(from_module(conv), bn)
    x = torch.randn(2, 3, 5, 5, dtype=DT)
    with torch.no_grad():
        torch.testing.assert_close(folded.forward(x, None, folded.bias), bn(conv(x)))


def test_unfoldable_batchnorm_is_a_per_channel_scale() -> None:
    bn = bn_with_statistics(3, seed=3)
    layer = from_batchnorm(bn)
    x = torch.randn(2, 3, 4, 4, dtype=DT)
    with torch.no_grad():
        torch.testing.assert_close(layer.forward(x, None, layer.bias), bn(x))
    scale, shift = batchnorm_scale(bn)
    torch.testing.assert_close(layer.transpose(torch.ones_like(x), x.shape), scale.view(1, 3, 1, 1).expand_as(x))
    assert layer.describe() == "per-channel scale and shift (3 channels)"
    assert shift.shape == (3,)


def test_refusals_say_what_to_do() -> None:
    with pytest.raises(NotImplementedError, match="padding_mode='zeros'"):
        from_module(nn.Conv2d(3, 4, 3, padding=1, padding_mode="reflect"))
    with pytest.raises(ValueError, match="running statistics"):
        from_batchnorm(nn.BatchNorm2d(3, track_running_stats=False))
    with pytest.raises(TypeError, match="not an affine layer: ReLU"):
        from_module(nn.ReLU())


def test_describe() -> None:
    assert from_module(nn.Linear(7, 5)).describe() == "linear 7→5"
    assert from_module(nn.Conv2d(4, 6, 3, stride=2, groups=2)).describe() == "conv 4→6 k3x3 s2 g2"
