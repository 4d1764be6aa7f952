"""AlexNet, in the single-tower form torchvision ships ("One weird trick", 2014).

A plain chain of five convolutions and three fully connected layers: the
textbook case for layer-wise splitting, with a large early activation and a
parameter-heavy classifier. Registered as ``alexnet``.
"""

from __future__ import annotations

import torch
from torch import nn

from partitioner.model.zoo.registry import register_model


class AlexNet(nn.Module):
    def __init__(self, num_classes: int = 1000, dropout: float = 0.5) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 64, kernel_size=11, stride=4, padding=2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(64, 192, kernel_size=5, padding=2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(192, 384, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(384, 256, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(256, 256, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
        )
        # Adaptive pooling makes the classifier input 256*6*6 at any input size >= 63.
        self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
        self.classifier = nn.Sequential(
            nn.Dropout(p=dropout),
            nn.Linear(256 * 6 * 6, 4096),
            nn.ReLU(inplace=True),
            nn.Dropout(p=dropout),
            nn.Linear(4096, 4096),
            nn.ReLU(inplace=True),
            nn.Linear(4096, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)  # (B, 256, h, w)
        x = self.avgpool(x)  # (B, 256, 6, 6)
        x = torch.flatten(x, 1)  # (B, 9216)
        return self.classifier(x)


# 63x63 is the smallest input AlexNet accepts: the last max-pool needs a 3x3 map.
@register_model(
    "alexnet",
    input_shape=(1, 3, 224, 224),
    test_input_shape=(1, 3, 63, 63),
    num_classes=1000,
    description="AlexNet (torchvision layout), 61.1M params, chain",
)
def alexnet() -> nn.Module:
    return AlexNet()
