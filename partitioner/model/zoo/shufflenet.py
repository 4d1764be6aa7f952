"""ShuffleNet V2 1.0x: channel split, two branches, channel shuffle (Ma et al., ECCV 2018).

A basic unit splits its channels in half: one half passes untouched, the other
goes through 1x1 -> depthwise 3x3 -> 1x1; the halves are concatenated and their
channels shuffled so the next unit's split mixes both. A downsampling unit feeds
the whole input to both branches (each strided) and so doubles the channels. A
cut inside a unit crosses both halves. Registered as ``shufflenet_v2``.
"""

from __future__ import annotations

import torch
from torch import nn

from partitioner.model.zoo.registry import register_model


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """Interleave ``groups`` groups of channels: reshape to (g, C/g), transpose, flatten."""
    # (B, C, H, W) -> (B, g, C/g, H, W) -> (B, C/g, g, H, W) -> (B, C, H, W)
    return x.unflatten(1, (groups, -1)).transpose(1, 2).flatten(1, 2)


def _conv_bn(
    in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, groups: int = 1
) -> list[nn.Module]:
    return [
        nn.Conv2d(
            in_channels, out_channels, kernel_size, stride, (kernel_size - 1) // 2,
            groups=groups, bias=False,
        ),
        nn.BatchNorm2d(out_channels),
    ]  # fmt: skip


class ShuffleUnit(nn.Module):
    """The paper's Figure 3(c) (stride 1, channel split) and 3(d) (stride 2, no split)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        if stride == 1 and in_channels != out_channels:
            raise ValueError("a stride-1 shuffle unit keeps its channel count")
        self.stride = stride
        branch = out_channels // 2
        self.left: nn.Module | None = None
        if stride > 1:
            self.left = nn.Sequential(
                *_conv_bn(in_channels, in_channels, 3, stride, groups=in_channels),
                *_conv_bn(in_channels, branch, 1),
                nn.ReLU(),
            )
        right_in = in_channels if stride > 1 else branch
        self.right = nn.Sequential(
            *_conv_bn(right_in, branch, 1),
            nn.ReLU(),
            # No ReLU after the depthwise conv (as in Xception and MobileNetV2).
            *_conv_bn(branch, branch, 3, stride, groups=branch),
            *_conv_bn(branch, branch, 1),
            nn.ReLU(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # self.left is fixed at construction, so this branch is not data-dependent.
        if self.left is None:
            # Channel split by two slices rather than chunk(): each half is its own graph
            # node, so a cut may fall between the split and either branch.
            half = x.shape[1] // 2
            left, right = x[:, :half], x[:, half:]  # (B, C/2, H, W) each
        else:
            left, right = self.left(x), x
        out = torch.cat([left, self.right(right)], 1)  # (B, C_out, H/s, W/s)
        return channel_shuffle(out, 2)


# Output channels and unit counts of stages 2-4 at 1.0x, from the paper's Table 5.
STAGE_CHANNELS = (116, 232, 464)
STAGE_UNITS = (4, 8, 4)


class ShuffleNetV2(nn.Module):
    """Layer names follow the paper's Table 5 (conv1, maxpool, stage2-4, conv5, fc)."""

    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        self.conv1 = nn.Sequential(*_conv_bn(3, 24, 3, stride=2), nn.ReLU())
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        in_channels = 24
        stages: list[nn.Sequential] = []
        for channels, units in zip(STAGE_CHANNELS, STAGE_UNITS, strict=True):
            blocks = [ShuffleUnit(in_channels, channels, 2)]
            blocks += [ShuffleUnit(channels, channels, 1) for _ in range(units - 1)]
            stages.append(nn.Sequential(*blocks))
            in_channels = channels
        self.stage2, self.stage3, self.stage4 = stages
        self.conv5 = nn.Sequential(*_conv_bn(in_channels, 1024, 1), nn.ReLU())
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(1024, num_classes)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_in", nonlinearity="relu")
            elif isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, 0.0, 0.01)
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.conv1(x))  # (B, 24, H/4, W/4)
        x = self.stage2(x)  # (B, 116, H/8, W/8)
        x = self.stage3(x)  # (B, 232, H/16, W/16)
        x = self.stage4(x)  # (B, 464, H/32, W/32)
        x = torch.flatten(self.avgpool(self.conv5(x)), 1)  # (B, 1024)
        return self.fc(x)


@register_model(
    "shufflenet_v2",
    input_shape=(1, 3, 224, 224),
    test_input_shape=(1, 3, 32, 32),
    num_classes=1000,
    description="ShuffleNet V2 1.0x (channel split + shuffle), 2.3M params, two-branch DAG",
)
def shufflenet_v2() -> nn.Module:
    return ShuffleNetV2()
