"""MobileNetV3-Large and -Small: searched inverted residuals with SE and hard-swish (Howard et al., ICCV 2019).

Each block is MobileNetV2's inverted residual (1x1 expand, depthwise k x k,
linear 1x1 projection, skip when the shape is kept), optionally with a
squeeze-and-excitation gate after the depthwise conv; the later layers use
hard-swish, the cheap piecewise-linear swish. The SE gate is a side branch that
rejoins with a multiply, so a cut inside it crosses the feature map and the
pooled gate. The building blocks here (:class:`ConvBNAct`, :class:`SqueezeExcite`,
:func:`make_divisible`) are shared with GhostNet and EfficientNet-B0, whose blocks
are variations of the same design. Registered as ``mobilenet_v3_large`` and
``mobilenet_v3_small``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

import torch
from torch import nn

from partitioner.model.zoo.mobilenet import make_divisible
from partitioner.model.zoo.registry import register_model

Activation = Callable[[], nn.Module]


class ConvBNAct(nn.Sequential):
    """conv (no bias) -> BN -> activation (``None``: linear); ``groups == channels`` is depthwise."""

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int = 1, stride: int = 1,
        groups: int = 1, activation: Activation | None = nn.ReLU, bn_eps: float = 1e-3,
    ) -> None:  # fmt: skip
        layers: list[nn.Module] = [
            nn.Conv2d(
                in_channels, out_channels, kernel_size, stride, (kernel_size - 1) // 2,
                groups=groups, bias=False,
            ),
            nn.BatchNorm2d(out_channels, eps=bn_eps),
        ]  # fmt: skip
        if activation is not None:
            layers.append(activation())
        super().__init__(*layers)


class SqueezeExcite(nn.Module):
    """Channel attention (Hu et al., 2018): global pool -> FC -> act -> FC -> gate -> rescale.

    The two FCs are 1x1 convolutions with bias on the pooled (B, C, 1, 1) map.
    """

    def __init__(
        self, channels: int, squeeze_channels: int, activation: Activation, gate: Activation
    ) -> None:
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.reduce = nn.Conv2d(channels, squeeze_channels, 1)
        self.act = activation()
        self.expand = nn.Conv2d(squeeze_channels, channels, 1)
        self.gate = gate()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.gate(self.expand(self.act(self.reduce(self.avgpool(x)))))  # (B, C, 1, 1)
        return x * scale


@dataclass(frozen=True)
class BneckSpec:
    """One row of the paper's Tables 1 and 2."""

    kernel_size: int
    expanded: int  # "exp size"
    out_channels: int  # "#out"
    se: bool
    hard_swish: bool  # "NL": HS, else RE (ReLU)
    stride: int


class Bneck(nn.Module):
    """Inverted residual: [1x1 expand] -> depthwise k x k -> [SE] -> linear 1x1, plus skip."""

    def __init__(self, in_channels: int, spec: BneckSpec) -> None:
        super().__init__()
        act: Activation = nn.Hardswish if spec.hard_swish else nn.ReLU
        self.use_residual = spec.stride == 1 and in_channels == spec.out_channels
        layers: list[nn.Module] = []
        if spec.expanded != in_channels:
            layers.append(ConvBNAct(in_channels, spec.expanded, activation=act))
        layers.append(
            ConvBNAct(
                spec.expanded, spec.expanded, spec.kernel_size, spec.stride,
                groups=spec.expanded, activation=act,
            )
        )  # fmt: skip
        if spec.se:
            # Section 5.3: the SE bottleneck is fixed to 1/4 of the expansion channels.
            squeeze = make_divisible(spec.expanded // 4, 8)
            layers.append(SqueezeExcite(spec.expanded, squeeze, nn.ReLU, nn.Hardsigmoid))
        layers.append(ConvBNAct(spec.expanded, spec.out_channels, activation=None))
        self.block = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # use_residual is fixed at construction, so this branch is not data-dependent.
        if self.use_residual:
            return x + self.block(x)
        return self.block(x)


# Table 1 (MobileNetV3-Large), rows after the stem: k, exp, out, SE, HS, s.
LARGE_BNECKS = tuple(
    BneckSpec(*row)
    for row in (
        (3, 16, 16, False, False, 1),
        (3, 64, 24, False, False, 2),
        (3, 72, 24, False, False, 1),
        (5, 72, 40, True, False, 2),
        (5, 120, 40, True, False, 1),
        (5, 120, 40, True, False, 1),
        (3, 240, 80, False, True, 2),
        (3, 200, 80, False, True, 1),
        (3, 184, 80, False, True, 1),
        (3, 184, 80, False, True, 1),
        (3, 480, 112, True, True, 1),
        (3, 672, 112, True, True, 1),
        (5, 672, 160, True, True, 2),
        (5, 960, 160, True, True, 1),
        (5, 960, 160, True, True, 1),
    )
)
# Table 2 (MobileNetV3-Small). The table also marks SE on the final 1x1 conv (576); the
# sizes of Table 3 (2.5M, 56M MAdds) are those of the network without it (an SE there
# would add 0.17M parameters), so it is left out, as in the released models.
SMALL_BNECKS = tuple(
    BneckSpec(*row)
    for row in (
        (3, 16, 16, True, False, 2),
        (3, 72, 24, False, False, 2),
        (3, 88, 24, False, False, 1),
        (5, 96, 40, True, True, 2),
        (5, 240, 40, True, True, 1),
        (5, 240, 40, True, True, 1),
        (5, 120, 48, True, True, 1),
        (5, 144, 48, True, True, 1),
        (5, 288, 96, True, True, 2),
        (5, 576, 96, True, True, 1),
        (5, 576, 96, True, True, 1),
    )
)


class MobileNetV3(nn.Module):
    """Stem 3x3/2 (16, HS) -> bnecks -> 1x1 conv (HS) -> pool -> FC (HS, no BN) -> FC."""

    def __init__(
        self,
        bnecks: tuple[BneckSpec, ...],
        last_channels: int,
        head_channels: int,
        num_classes: int = 1000,
        dropout: float = 0.2,
    ) -> None:
        super().__init__()
        features: list[nn.Module] = [ConvBNAct(3, 16, 3, stride=2, activation=nn.Hardswish)]
        in_channels = 16
        for spec in bnecks:
            features.append(Bneck(in_channels, spec))
            in_channels = spec.out_channels
        features.append(ConvBNAct(in_channels, last_channels, activation=nn.Hardswish))
        self.features = nn.Sequential(*features)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        # The paper's "conv2d 1x1, NBN" layers after the pool act on a 1x1 map: linear layers.
        self.classifier = nn.Sequential(
            nn.Linear(last_channels, head_channels),
            nn.Hardswish(),
            nn.Dropout(p=dropout),
            nn.Linear(head_channels, num_classes),
        )
        init_lightweight(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)  # (B, last_channels, H/32, W/32)
        x = torch.flatten(self.avgpool(x), 1)  # (B, last_channels)
        return self.classifier(x)


def init_lightweight(model: nn.Module) -> None:
    """Seeded-RNG weights under which every tensor between layers keeps a second moment near 1.

    A conv followed by a ReLU-like activation gets He's gain (sqrt 2, the activation
    halves the second moment), a conv followed by none gets gain 1, both over fan-in
    (fan-out would shrink activations ~1e10-fold through depthwise convs, see
    mobilenet.py, and grow them as much through projections). SE gates start open,
    near 1: with a gate of 0.5 each SE block would halve the signal, 2^-16 by the
    logits of EfficientNet-B0. Biases start at zero and linear layers at N(0, 0.01).
    """
    for module in model.modules():
        if isinstance(module, ConvBNAct):
            conv = cast(nn.Conv2d, module[0])
            has_activation = len(module) > 2
            nn.init.kaiming_normal_(
                conv.weight, mode="fan_in", nonlinearity="relu" if has_activation else "linear"
            )
        elif isinstance(module, SqueezeExcite):
            nn.init.kaiming_normal_(module.reduce.weight, mode="fan_in", nonlinearity="linear")
            nn.init.kaiming_normal_(module.expand.weight, mode="fan_in", nonlinearity="relu")
            # hardsigmoid(3) = 1 and sigmoid(3) = 0.95.
            nn.init.zeros_(cast(torch.Tensor, module.reduce.bias))
            nn.init.constant_(cast(torch.Tensor, module.expand.bias), 3.0)
        elif isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, 0.0, 0.01)
            nn.init.zeros_(module.bias)


# 32x32 is the smallest input at which all five stride-2 layers halve a real map.
@register_model(
    "mobilenet_v3_large",
    input_shape=(1, 3, 224, 224),
    test_input_shape=(1, 3, 32, 32),
    num_classes=1000,
    description="MobileNetV3-Large 1.0 (SE, hard-swish), 5.5M params, residual + SE DAG",
)
def mobilenet_v3_large() -> nn.Module:
    return MobileNetV3(LARGE_BNECKS, last_channels=960, head_channels=1280)


@register_model(
    "mobilenet_v3_small",
    input_shape=(1, 3, 224, 224),
    test_input_shape=(1, 3, 32, 32),
    num_classes=1000,
    description="MobileNetV3-Small 1.0 (SE, hard-swish), 2.5M params, residual + SE DAG",
)
def mobilenet_v3_small() -> nn.Module:
    return MobileNetV3(SMALL_BNECKS, last_channels=576, head_channels=1024)
