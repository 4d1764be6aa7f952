"""What the literature reports for each zoo network, and the graph count that compares with it.

Quoted, never measured here (there is no ImageNet on this machine). Papers count
multiply-accumulates (MACs) of convolutions and fully connected layers and call
them "FLOPs" (ShuffleNet V2, GhostNet, EfficientNet), "MAdds" (MobileNetV3) or
"GFLOPS" (torchvision's model tables); :func:`conv_linear_macs` counts a captured
graph the same way. The graph's own FLOPs (:mod:`partitioner.model.ops`) are two
per MAC plus batch norm, activations, SE multiplies and pooling.

    >>> PUBLISHED["ghostnet"].macs
    141000000.0
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from partitioner.model.graph import Graph

# Node classes whose FLOPs are multiply-accumulates (partitioner.model.ops.OP_CLASSES).
MAC_CLASSES = frozenset({"conv", "dwconv", "matmul"})

_TV = "torchvision model docs"


@dataclass(frozen=True)
class Published:
    """Figures for one network at 224x224, each with where it was published."""

    top1_percent: float  # ImageNet-1k val, single 224x224 crop
    top1_source: str
    params: float | None = None  # None where only the accuracy is quoted
    params_source: str = ""
    macs: float | None = None  # multiply-accumulates per frame
    macs_source: str = ""


PUBLISHED: dict[str, Published] = {
    # The lightweight networks: the papers' own tables where the paper gives the figure.
    "squeezenet1_1": Published(
        # v1.1 exists only in the authors' repository ("2.4x less computation than 1.0,
        # without sacrificing accuracy"); the paper's Table 2 gives 57.5% for v1.0.
        top1_percent=58.178,
        top1_source=f"{_TV}, squeezenet1_1 IMAGENET1K_V1",
        params=1_235_496,
        params_source=f"{_TV}, squeezenet1_1 num_params",
        macs=0.35e9,
        macs_source=f"{_TV}, squeezenet1_1 GFLOPS 0.35 (multiply-adds)",
    ),
    "shufflenet_v2": Published(
        top1_percent=69.4,
        top1_source="Ma et al. ECCV'18, Table 8: ShuffleNet v2 1x, top-1 err 30.6",
        params=2.3e6,
        params_source="Ma et al. ECCV'18, Table 5: 1x, # of weights 2.3M",
        macs=146e6,
        macs_source="Ma et al. ECCV'18, Table 5: 1x, 146M FLOPs (multiply-adds)",
    ),
    "mobilenet_v3_small": Published(
        top1_percent=67.4,
        top1_source="Howard et al. ICCV'19, Table 3: V3-Small 1.0",
        params=2.5e6,
        params_source="Howard et al. ICCV'19, Table 3: V3-Small 1.0, 2.5M params",
        macs=56e6,
        macs_source="Howard et al. ICCV'19, Table 3: V3-Small 1.0, 56M MAdds",
    ),
    "mobilenet_v3_large": Published(
        top1_percent=75.2,
        top1_source="Howard et al. ICCV'19, Table 3: V3-Large 1.0",
        params=5.4e6,
        params_source="Howard et al. ICCV'19, Table 3: V3-Large 1.0, 5.4M params",
        macs=219e6,
        macs_source="Howard et al. ICCV'19, Table 3: V3-Large 1.0, 219M MAdds",
    ),
    "ghostnet": Published(
        top1_percent=73.9,
        top1_source="Han et al. CVPR'20, Table 7: GhostNet 1.0x",
        params=5.2e6,
        params_source="Han et al. CVPR'20, Table 7: GhostNet 1.0x, 5.2M weights",
        macs=141e6,
        macs_source="Han et al. CVPR'20, Table 7: GhostNet 1.0x, 141M FLOPs (multiply-adds)",
    ),
    "efficientnet_b0": Published(
        top1_percent=77.1,
        top1_source="Tan & Le ICML'19, Table 2: EfficientNet-B0",
        params=5.3e6,
        params_source="Tan & Le ICML'19, Table 2: EfficientNet-B0, 5.3M params",
        macs=0.39e9,
        macs_source="Tan & Le ICML'19, Table 2: EfficientNet-B0, 0.39B FLOPs (multiply-adds)",
    ),
    # The rest of the zoo replicates torchvision's definitions (its parameter counts are
    # asserted in tests/partitioner/model/test_zoo.py), so torchvision's single-crop
    # accuracies are the ones that describe them; the papers used multi-crop protocols.
    "alexnet": Published(56.522, f"{_TV}, alexnet IMAGENET1K_V1"),
    "vgg16": Published(71.592, f"{_TV}, vgg16 IMAGENET1K_V1"),
    "resnet18": Published(69.758, f"{_TV}, resnet18 IMAGENET1K_V1"),
    "resnet34": Published(73.314, f"{_TV}, resnet34 IMAGENET1K_V1"),
    "resnet50": Published(76.130, f"{_TV}, resnet50 IMAGENET1K_V1"),
    "mobilenet_v2": Published(71.878, f"{_TV}, mobilenet_v2 IMAGENET1K_V1"),
    "googlenet": Published(69.778, f"{_TV}, googlenet IMAGENET1K_V1"),
}


def conv_linear_macs(graph: Graph) -> int:
    """Multiply-accumulates of the conv and linear nodes, the quantity papers call FLOPs.

    The ops rules give such a node 2 FLOPs per MAC plus 1 per output element for a
    bias, so MACs per output element are ``flops // outputs // 2`` either way.
    """
    macs = 0
    for node in graph.nodes:
        if node.op_class in MAC_CLASSES:
            outputs = math.prod(node.shape)
            macs += outputs * (node.flops // outputs // 2)
    return macs
