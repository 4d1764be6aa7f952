"""Every zoo model at full input size, every layer-boundary cut: head then tail vs the whole model.

    python benchmarks/split_full_size.py [model ...]

The test suite checks the same at reduced input sizes; this prints the worst relative
error per model at 224x224 (digits_cnn at 8x8) and how many cuts cross several tensors.
"""

from __future__ import annotations

import sys
import time

import torch

import partitioner.model.zoo as zoo
from partitioner.deploy.split import split_module
from partitioner.model.capture import capture


def main(names: list[str]) -> None:
    torch.set_num_threads(2)
    print(f"{'model':<14}{'cuts':>6}{'multi-tensor':>14}{'max rel err':>14}{'seconds':>10}")
    for name in names or [e.name for e in zoo.MODELS.list()]:
        start = time.perf_counter()
        entry = zoo.MODELS.get(name)
        model = zoo.create_model(name)
        cap = capture(model, torch.randn(entry.input_shape), name=name)
        x = torch.randn((2, *entry.input_shape[1:]), generator=torch.Generator().manual_seed(0))
        worst, multi = 0.0, 0
        with torch.inference_mode():
            want = model(x)
            cuts = cap.graph.prefix_cuts()
            for cut in cuts:
                halves = split_module(cap, cut)
                mid = tuple(halves.head(x))
                got = halves.tail(*mid)[0] if halves.tail is not None else mid[0]
                worst = max(worst, float((got - want).abs().max() / want.abs().max()))
                multi += len(halves.crossing) > 1
        print(
            f"{name:<14}{len(cuts):>6}{multi:>14}{worst:>14.2e}{time.perf_counter() - start:>10.1f}"
        )


if __name__ == "__main__":
    main(sys.argv[1:])
