"""EfficientNet-B0: the searched MBConv baseline of compound scaling (Tan & Le, ICML 2019).

Every block is a mobile inverted bottleneck (MBConv: 1x1 expand by 1 or 6,
depthwise 3x3 or 5x5, squeeze-and-excitation, linear 1x1 projection, skip when
the shape is kept) with swish (SiLU) activations; the SE bottleneck is a quarter
of the block's input channels. B1-B7 scale this network's depth, width and
resolution together; only B0 is registered, as ``efficientnet_b0``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from partitioner.model.zoo.mobilenetv3 import ConvBNAct, SqueezeExcite, init_lightweight
from partitioner.model.zoo.registry import register_model


@dataclass(frozen=True)
class StageSpec:
    """One row of the paper's Table 1."""

    expand_ratio: int  # MBConv1 or MBConv6
    kernel_size: int
    stride: int  # of the stage's first layer
    out_channels: int
    layers: int


# Table 1, stages 2-8 (stage 1 is the stem, stage 9 the head).
B0_STAGES = tuple(
    StageSpec(*row)
    for row in (
        (1, 3, 1, 16, 1),
        (6, 3, 2, 24, 2),
        (6, 5, 2, 40, 2),
        (6, 3, 2, 80, 3),
        (6, 5, 1, 112, 3),
        (6, 5, 2, 192, 4),
        (6, 3, 1, 320, 1),
    )
)


class MBConv(nn.Module):
    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int, stride: int,
        expand_ratio: int, se_ratio: float = 0.25,
    ) -> None:  # fmt: skip
        super().__init__()
        hidden = in_channels * expand_ratio
        self.use_residual = stride == 1 and in_channels == out_channels
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(ConvBNAct(in_channels, hidden, activation=nn.SiLU))
        layers += [
            ConvBNAct(hidden, hidden, kernel_size, stride, groups=hidden, activation=nn.SiLU),
            SqueezeExcite(hidden, max(1, int(in_channels * se_ratio)), nn.SiLU, nn.Sigmoid),
            ConvBNAct(hidden, out_channels, activation=None),
        ]
        self.block = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # use_residual is fixed at construction; stochastic depth only acts in training.
        if self.use_residual:
            return x + self.block(x)
        return self.block(x)


class EfficientNet(nn.Module):
    def __init__(
        self, stages: tuple[StageSpec, ...] = B0_STAGES, num_classes: int = 1000,
        dropout: float = 0.2,
    ) -> None:  # fmt: skip
        super().__init__()
        features: list[nn.Module] = [ConvBNAct(3, 32, 3, stride=2, activation=nn.SiLU)]
        in_channels = 32
        for stage in stages:
            blocks = []
            for i in range(stage.layers):
                stride = stage.stride if i == 0 else 1
                blocks.append(
                    MBConv(
                        in_channels, stage.out_channels, stage.kernel_size, stride,
                        stage.expand_ratio,
                    )
                )  # fmt: skip
                in_channels = stage.out_channels
            features.append(nn.Sequential(*blocks))
        features.append(ConvBNAct(in_channels, 1280, activation=nn.SiLU))
        self.features = nn.Sequential(*features)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.classifier = nn.Sequential(nn.Dropout(p=dropout), nn.Linear(1280, num_classes))
        init_lightweight(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)  # (B, 1280, H/32, W/32)
        x = torch.flatten(self.avgpool(x), 1)  # (B, 1280)
        return self.classifier(x)


@register_model(
    "efficientnet_b0",
    input_shape=(1, 3, 224, 224),
    test_input_shape=(1, 3, 32, 32),
    num_classes=1000,
    description="EfficientNet-B0 (MBConv + SE, swish), 5.3M params, residual + SE DAG",
)
def efficientnet_b0() -> nn.Module:
    return EfficientNet()
