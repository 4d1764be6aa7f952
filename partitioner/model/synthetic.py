"""Synthetic graphs: random DAGs and chains for tests and solver benchmarks.

Node sizes and FLOPs are drawn from a seeded ``numpy.random.Generator`` so the
same seed gives the same graph; shapes are nominal (N, C) float32 tensors.
"""

from __future__ import annotations

import numpy as np

from partitioner.model.graph import Graph, Node


def random_dag(
    n_nodes: int,
    rng: np.random.Generator,
    *,
    max_fan_in: int = 3,
    window: int = 8,
    chain: bool = False,
    output_prob: float = 0.0,
) -> Graph:
    """A connected DAG: node i reads node i-1 plus up to max_fan_in-1 of the ``window`` before it.

    With ``chain`` every node reads only its predecessor. The last node is always
    an output; others become outputs with ``output_prob``.
    """
    if n_nodes < 2:
        raise ValueError("a graph needs an input and at least one op")
    inputs: list[list[int]] = [[]]
    for i in range(1, n_nodes):
        if chain:
            inputs.append([i - 1])
            continue
        # A backbone (i-1 -> i) so every op has a consumer, plus random skip connections.
        lo = max(0, i - window)
        k = int(rng.integers(0, min(max_fan_in, i - lo)))
        skips = rng.choice(np.arange(lo, i - 1), size=min(k, i - 1 - lo), replace=False)
        inputs.append(sorted({i - 1, *skips.tolist()}))
    users: list[list[int]] = [[] for _ in range(n_nodes)]
    for i, ins in enumerate(inputs):
        for p in ins:
            users[p].append(i)
    is_output = [not users[i] and i > 0 for i in range(n_nodes)]
    is_output[-1] = True
    for i in range(1, n_nodes - 1):
        if rng.random() < output_prob:
            is_output[i] = True
    names = ["x"] + [f"n{i}" for i in range(1, n_nodes)]
    nodes: list[Node] = []
    for i in range(n_nodes):
        # Like a CNN, tensors shrink with depth (by about 50x from input to output), so
        # the best cut sits inside the graph rather than at either end.
        channels = max(1, int(rng.integers(256, 1024) * np.exp(-5.0 * i / n_nodes))) * 64
        out_bytes = channels * 4
        flops = 0 if i == 0 else int(rng.integers(1, 40)) * 10**6
        nodes.append(
            Node(
                name=names[i],
                op="input" if i == 0 else "conv2d",
                op_class="input" if i == 0 else "conv",
                shape=(1, channels),
                dtype="float32",
                out_bytes=out_bytes,
                flops=flops,
                param_bytes=0 if i == 0 else flops // 100,
                in_bytes=sum(nodes[p].out_bytes for p in inputs[i]) if i else 0,
                inputs=tuple(names[p] for p in inputs[i]),
                users=tuple(names[u] for u in users[i]),
                is_output=is_output[i],
            )
        )
    outputs = tuple(names[i] for i in range(n_nodes) if is_output[i])
    return Graph(model=f"random_dag_{n_nodes}", nodes=tuple(nodes), inputs=("x",), outputs=outputs)
