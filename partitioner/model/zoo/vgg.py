"""VGG-16 (configuration "D"): thirteen 3x3 convolutions in five stages, then three FCs.

The heaviest model in the zoo (138M parameters, 15.5 GFLOPs at 224x224), and a
pure chain whose activations shrink stage by stage: the case where a split late
in the network pays off. Registered as ``vgg16``.
"""

from __future__ import annotations

import torch
from torch import nn

from partitioner.model.zoo.registry import register_model

# Output channels of each 3x3 conv; "M" is a 2x2 max-pool that halves H and W.
VGG16_LAYOUT: tuple[int | str, ...] = (
    64, 64, "M",
    128, 128, "M",
    256, 256, 256, "M",
    512, 512, 512, "M",
    512, 512, 512, "M",
)  # fmt: skip


def _make_features(layout: tuple[int | str, ...], in_channels: int = 3) -> nn.Sequential:
    layers: list[nn.Module] = []
    channels = in_channels
    for item in layout:
        if item == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            assert isinstance(item, int)
            layers.append(nn.Conv2d(channels, item, kernel_size=3, padding=1))
            layers.append(nn.ReLU(inplace=True))
            channels = item
    return nn.Sequential(*layers)


class VGG(nn.Module):
    def __init__(
        self,
        layout: tuple[int | str, ...] = VGG16_LAYOUT,
        num_classes: int = 1000,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        self.features = _make_features(layout)
        # Adaptive pooling keeps the classifier at 512*7*7 for inputs from 32x32 up.
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.classifier = nn.Sequential(
            nn.Linear(512 * 7 * 7, 4096),
            nn.ReLU(inplace=True),
            nn.Dropout(p=dropout),
            nn.Linear(4096, 4096),
            nn.ReLU(inplace=True),
            nn.Dropout(p=dropout),
            nn.Linear(4096, num_classes),
        )
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, 0.0, 0.01)
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)  # (B, 512, H/32, W/32)
        x = self.avgpool(x)  # (B, 512, 7, 7)
        x = torch.flatten(x, 1)  # (B, 25088)
        return self.classifier(x)


# 32x32 is the smallest input: five 2x2 max-pools need at least 2**5 pixels.
@register_model(
    "vgg16",
    input_shape=(1, 3, 224, 224),
    test_input_shape=(1, 3, 32, 32),
    num_classes=1000,
    description="VGG-16 (configuration D, no BN), 138.4M params, chain",
)
def vgg16() -> nn.Module:
    return VGG(VGG16_LAYOUT)
