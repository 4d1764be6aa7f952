"""GhostNet 1.0x: Ghost modules, more features from cheap operations (Han et al., CVPR 2020).

A Ghost module makes half its output channels with an ordinary 1x1 convolution
(the "intrinsic" maps) and the other half from those by a cheap depthwise 3x3
("ghost" maps), then concatenates both. A Ghost bottleneck stacks two modules
(expand, then project) around an optional stride-2 depthwise conv and SE gate,
with a skip that is a depthwise + 1x1 projection when the shape changes. The
layout is MobileNetV3-Large's with its bottlenecks replaced (the paper's
Table 1). Registered as ``ghostnet``.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from partitioner.model.zoo.mobilenet import make_divisible
from partitioner.model.zoo.mobilenetv3 import ConvBNAct, SqueezeExcite, init_lightweight
from partitioner.model.zoo.registry import register_model


class GhostModule(nn.Module):
    """1x1 conv to ceil(n/s) intrinsic maps, depthwise 3x3 to the ghosts, concat (s = 2)."""

    def __init__(self, in_channels: int, out_channels: int, relu: bool, ratio: int = 2) -> None:
        super().__init__()
        act = nn.ReLU if relu else None
        self.out_channels = out_channels
        intrinsic = math.ceil(out_channels / ratio)
        ghosts = intrinsic * (ratio - 1)
        self.primary = ConvBNAct(in_channels, intrinsic, 1, activation=act, bn_eps=1e-5)
        # The cheap operation: a d x d depthwise conv per intrinsic map (d = 3 in the paper).
        self.cheap = ConvBNAct(intrinsic, ghosts, 3, groups=intrinsic, activation=act, bn_eps=1e-5)
        self.trim = intrinsic + ghosts != out_channels  # odd n: drop the surplus ghost maps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        intrinsic = self.primary(x)  # (B, n/s, H, W)
        out = torch.cat([intrinsic, self.cheap(intrinsic)], 1)  # (B, n, H, W)
        return out[:, : self.out_channels] if self.trim else out


class GhostBottleneck(nn.Module):
    """Ghost(expand, ReLU) -> [depthwise k x k / 2] -> [SE] -> Ghost(project, linear), plus skip."""

    def __init__(
        self, in_channels: int, expanded: int, out_channels: int, kernel_size: int, stride: int,
        se: bool,
    ) -> None:  # fmt: skip
        super().__init__()
        self.ghost1 = GhostModule(in_channels, expanded, relu=True)
        self.depthwise: nn.Module | None = None
        if stride > 1:
            self.depthwise = ConvBNAct(
                expanded, expanded, kernel_size, stride, groups=expanded, activation=None,
                bn_eps=1e-5,
            )  # fmt: skip
        self.se: nn.Module | None = None
        if se:
            squeeze = make_divisible(expanded * 0.25, 4)
            self.se = SqueezeExcite(expanded, squeeze, nn.ReLU, nn.Hardsigmoid)
        self.ghost2 = GhostModule(expanded, out_channels, relu=False)
        self.shortcut: nn.Module | None = None
        if stride > 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                ConvBNAct(
                    in_channels, in_channels, kernel_size, stride, groups=in_channels,
                    activation=None, bn_eps=1e-5,
                ),
                ConvBNAct(in_channels, out_channels, 1, activation=None, bn_eps=1e-5),
            )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Which optional layers exist is fixed at construction: no data-dependent branch.
        out = self.ghost1(x)  # (B, exp, H, W)
        if self.depthwise is not None:
            out = self.depthwise(out)  # (B, exp, H/s, W/s)
        if self.se is not None:
            out = self.se(out)
        out = self.ghost2(out)  # (B, out, H/s, W/s)
        return out + (x if self.shortcut is None else self.shortcut(x))


# The paper's Table 1 after the stem: kernel, exp, out, SE, stride. Kernel sizes are
# MobileNetV3-Large's (5x5 in the 40- and 160-channel stages), whose layout GhostNet keeps.
GHOSTNET_BNECKS: tuple[tuple[int, int, int, bool, int], ...] = (
    (3, 16, 16, False, 1),
    (3, 48, 24, False, 2),
    (3, 72, 24, False, 1),
    (5, 72, 40, True, 2),
    (5, 120, 40, True, 1),
    (3, 240, 80, False, 2),
    (3, 200, 80, False, 1),
    (3, 184, 80, False, 1),
    (3, 184, 80, False, 1),
    (3, 480, 112, True, 1),
    (3, 672, 112, True, 1),
    (5, 672, 160, True, 2),
    (5, 960, 160, False, 1),
    (5, 960, 160, True, 1),
    (5, 960, 160, False, 1),
    (5, 960, 160, True, 1),
)


class GhostNet(nn.Module):
    """Stem 3x3/2 (16) -> G-bnecks -> 1x1 conv (960) -> pool -> 1x1 conv (1280, no BN) -> FC."""

    def __init__(self, num_classes: int = 1000, dropout: float = 0.2) -> None:
        super().__init__()
        features: list[nn.Module] = [ConvBNAct(3, 16, 3, stride=2, bn_eps=1e-5)]
        in_channels = 16
        for kernel_size, expanded, out_channels, se, stride in GHOSTNET_BNECKS:
            features.append(
                GhostBottleneck(in_channels, expanded, out_channels, kernel_size, stride, se)
            )
            in_channels = out_channels
        features.append(ConvBNAct(in_channels, 960, 1, bn_eps=1e-5))
        self.features = nn.Sequential(*features)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.classifier = nn.Sequential(
            nn.Linear(960, 1280), nn.ReLU(), nn.Dropout(p=dropout), nn.Linear(1280, num_classes)
        )
        init_lightweight(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)  # (B, 960, H/32, W/32)
        x = torch.flatten(self.avgpool(x), 1)  # (B, 960)
        return self.classifier(x)


@register_model(
    "ghostnet",
    input_shape=(1, 3, 224, 224),
    test_input_shape=(1, 3, 32, 32),
    num_classes=1000,
    description="GhostNet 1.0x (Ghost modules, SE), 5.2M params, residual + concat DAG",
)
def ghostnet() -> nn.Module:
    return GhostNet()
