"""SqueezeNet 1.1: fire modules, AlexNet accuracy at 1.2M parameters (Iandola et al., 2016).

A fire module squeezes its input to a few channels with 1x1 convolutions, then
expands them again with parallel 1x1 and 3x3 convolutions whose outputs are
concatenated: a two-branch DAG, so a cut inside a fire module crosses two
tensors. Version 1.1 (the official repository's revision of the paper's 1.0) has
a 3x3 first convolution with 64 filters and pools earlier, for 2.4x less
computation at the same accuracy. No batch norm; every convolution has a bias.
Registered as ``squeezenet1_1``.
"""

from __future__ import annotations

import torch
from torch import nn

from partitioner.model.zoo.registry import register_model


class Fire(nn.Module):
    """1x1 squeeze -> ReLU -> (1x1 expand | 3x3 expand) -> ReLU each -> concat on channels."""

    def __init__(
        self, in_channels: int, squeeze_channels: int, expand1x1: int, expand3x3: int
    ) -> None:
        super().__init__()
        self.squeeze = nn.Conv2d(in_channels, squeeze_channels, 1)
        self.squeeze_relu = nn.ReLU()
        self.expand1x1 = nn.Conv2d(squeeze_channels, expand1x1, 1)
        self.expand1x1_relu = nn.ReLU()
        self.expand3x3 = nn.Conv2d(squeeze_channels, expand3x3, 3, padding=1)
        self.expand3x3_relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.squeeze_relu(self.squeeze(x))  # (B, s, H, W)
        return torch.cat(
            [self.expand1x1_relu(self.expand1x1(s)), self.expand3x3_relu(self.expand3x3(s))], 1
        )  # (B, e1 + e3, H, W)


class SqueezeNet11(nn.Module):
    """Layer names follow the paper's Table 1 (conv1, fire2..fire9, conv10)."""

    def __init__(self, num_classes: int = 1000, dropout: float = 0.5) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 3, stride=2)  # no padding: 224 -> 111
        self.relu1 = nn.ReLU()
        # Caffe rounds pooled sizes up; ceil_mode gives its 55/27/13 maps at 224.
        self.pool1 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.fire2 = Fire(64, 16, 64, 64)
        self.fire3 = Fire(128, 16, 64, 64)
        self.pool3 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.fire4 = Fire(128, 32, 128, 128)
        self.fire5 = Fire(256, 32, 128, 128)
        self.pool5 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.fire6 = Fire(256, 48, 192, 192)
        self.fire7 = Fire(384, 48, 192, 192)
        self.fire8 = Fire(384, 64, 256, 256)
        self.fire9 = Fire(512, 64, 256, 256)
        self.dropout = nn.Dropout(p=dropout)
        # The classifier is a 1x1 convolution to class maps, averaged over space (no FC layer).
        self.conv10 = nn.Conv2d(512, num_classes, 1)
        self.relu10 = nn.ReLU()
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                if module is self.conv10:
                    nn.init.normal_(module.weight, 0.0, 0.01)
                else:
                    nn.init.kaiming_normal_(module.weight, mode="fan_in", nonlinearity="relu")
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool1(self.relu1(self.conv1(x)))  # (B, 64, H/4, W/4)
        x = self.pool3(self.fire3(self.fire2(x)))  # (B, 128, H/8, W/8)
        x = self.pool5(self.fire5(self.fire4(x)))  # (B, 256, H/16, W/16)
        x = self.fire9(self.fire8(self.fire7(self.fire6(x))))  # (B, 512, H/16, W/16)
        x = self.relu10(self.conv10(self.dropout(x)))  # (B, classes, H/16, W/16)
        return torch.flatten(self.avgpool(x), 1)  # (B, classes)


# The unpadded 3x3/2 stem and three 3x3/2 pools need 17x17 at least; 32x32 gives
# 15 -> 7 -> 3 -> 1 maps, so every stage still runs on a real map.
@register_model(
    "squeezenet1_1",
    input_shape=(1, 3, 224, 224),
    test_input_shape=(1, 3, 32, 32),
    num_classes=1000,
    description="SqueezeNet 1.1 (fire modules, no BN), 1.2M params, two-branch DAG",
)
def squeezenet1_1() -> nn.Module:
    return SqueezeNet11()
