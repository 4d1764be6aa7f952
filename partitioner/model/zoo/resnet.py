"""ResNet-18/34/50 (torchvision's v1.5: the stride of a bottleneck sits on its 3x3 conv).

Residual blocks make the graph a DAG: every block's input feeds both its
convolutions and the skip connection, so a cut inside a block sends two
tensors. Registered as ``resnet18``, ``resnet34`` and ``resnet50``.
"""

from __future__ import annotations

import torch
from torch import nn

from partitioner.model.zoo.registry import register_model


def _conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)


def _conv1x1(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 convolutions plus the skip (ResNet-18/34)."""

    expansion = 1

    def __init__(
        self, in_channels: int, planes: int, stride: int = 1, downsample: nn.Module | None = None
    ) -> None:
        super().__init__()
        self.conv1 = _conv3x3(in_channels, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv2 = _conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample
        # A separate module per ReLU, so each activation has its own node name.
        self.relu2 = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu2(out + identity)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (strided), 1x1 expand by 4, plus the skip (ResNet-50)."""

    expansion = 4

    def __init__(
        self, in_channels: int, planes: int, stride: int = 1, downsample: nn.Module | None = None
    ) -> None:
        super().__init__()
        self.conv1 = _conv1x1(in_channels, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv2 = _conv3x3(planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv3 = _conv1x1(planes, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.downsample = downsample
        self.relu3 = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.relu2(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu3(out + identity)


class ResNet(nn.Module):
    def __init__(
        self,
        block: type[BasicBlock | Bottleneck],
        blocks_per_stage: tuple[int, int, int, int],
        num_classes: int = 1000,
    ) -> None:
        super().__init__()
        self._in_channels = 64
        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_stage(block, 64, blocks_per_stage[0], stride=1)
        self.layer2 = self._make_stage(block, 128, blocks_per_stage[1], stride=2)
        self.layer3 = self._make_stage(block, 256, blocks_per_stage[2], stride=2)
        self.layer4 = self._make_stage(block, 512, blocks_per_stage[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512 * block.expansion, num_classes)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def _make_stage(
        self, block: type[BasicBlock | Bottleneck], planes: int, count: int, stride: int
    ) -> nn.Sequential:
        out_channels = planes * block.expansion
        downsample = None
        if stride != 1 or self._in_channels != out_channels:
            # The skip must match the block's output shape: a strided 1x1 projection.
            downsample = nn.Sequential(
                _conv1x1(self._in_channels, out_channels, stride), nn.BatchNorm2d(out_channels)
            )
        layers = [block(self._in_channels, planes, stride, downsample)]
        self._in_channels = out_channels
        layers += [block(out_channels, planes) for _ in range(1, count)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))  # (B, 64, H/4, W/4)
        x = self.layer1(x)  # (B, 64e, H/4, W/4), e = block expansion
        x = self.layer2(x)  # (B, 128e, H/8, W/8)
        x = self.layer3(x)  # (B, 256e, H/16, W/16)
        x = self.layer4(x)  # (B, 512e, H/32, W/32)
        x = torch.flatten(self.avgpool(x), 1)  # (B, 512e)
        return self.fc(x)


# ResNets accept any input down to 1x1 (padding keeps every map >= 1 pixel); 32x32 is
# the smallest at which every stride-2 stage still halves a real map.
_TEST_SHAPE = (1, 3, 32, 32)


@register_model(
    "resnet18",
    input_shape=(1, 3, 224, 224),
    test_input_shape=_TEST_SHAPE,
    num_classes=1000,
    description="ResNet-18 (BasicBlock 2-2-2-2), 11.7M params, residual DAG",
)
def resnet18() -> nn.Module:
    return ResNet(BasicBlock, (2, 2, 2, 2))


@register_model(
    "resnet34",
    input_shape=(1, 3, 224, 224),
    test_input_shape=_TEST_SHAPE,
    num_classes=1000,
    description="ResNet-34 (BasicBlock 3-4-6-3), 21.8M params, residual DAG",
)
def resnet34() -> nn.Module:
    return ResNet(BasicBlock, (3, 4, 6, 3))


@register_model(
    "resnet50",
    input_shape=(1, 3, 224, 224),
    test_input_shape=_TEST_SHAPE,
    num_classes=1000,
    description="ResNet-50 v1.5 (Bottleneck 3-4-6-3), 25.6M params, residual DAG",
)
def resnet50() -> nn.Module:
    return ResNet(Bottleneck, (3, 4, 6, 3))
