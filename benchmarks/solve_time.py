"""Solver timings against the goals: mincut <= 20 ms on resnet50 and googlenet, <= 1 s on a
2,000-node DAG, breakpoint lookup <= 50 µs.

    python benchmarks/solve_time.py
"""

from __future__ import annotations

import statistics
import time

import numpy as np
import torch

import partitioner.model.zoo as zoo
from partitioner.model.capture import capture
from partitioner.model.synthetic import random_dag
from partitioner.pricing.cost import CostModel
from partitioner.pricing.network import NETWORKS
from partitioner.pricing.profiles import DEVICES
from partitioner.solve import solve
from partitioner.solve.breakpoints import build_table
from partitioner.solve.problem import SOLVERS, make_problem


def timed(fn, repeats: int) -> float:
    """Median wall time of fn() in ms."""
    fn()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1e3)
    return statistics.median(samples)


def main() -> None:
    torch.set_num_threads(1)
    print(f"{'problem':<38}{'nodes':>7}{'solver':>12}{'median ms':>12}{'goal':>10}")
    for name in ("resnet18", "resnet50", "googlenet", "mobilenet_v2"):
        cap = capture(zoo.create_model(name), torch.randn(1, 3, 224, 224), name=name)
        cost = CostModel(
            cap.graph, DEVICES.get("jetson-nano"), DEVICES.get("a100"), NETWORKS.get("lte"), "int8"
        )
        for solver in ("mincut", "chain"):
            problem = make_problem(cost, "latency", 8.0)
            fn = SOLVERS.get(solver)
            ms = timed(lambda fn=fn, problem=problem: fn(problem), 30)
            goal = "20 ms" if solver == "mincut" and name in ("resnet50", "googlenet") else ""
            print(
                f"{name + ' latency @ 8 Mbit/s':<38}{len(cap.graph):>7}{solver:>12}{ms:>12.2f}{goal:>10}"
            )
        table = build_table(cost, 0.1, 1000.0)
        start = time.perf_counter()
        build_table(cost, 0.1, 1000.0)
        table_ms = (time.perf_counter() - start) * 1e3
        bws = np.geomspace(0.1, 1000.0, 100_000)
        start = time.perf_counter()
        for bw in bws:
            table.lookup(float(bw))
        lookup_us = (time.perf_counter() - start) / len(bws) * 1e6
        print(
            f"{name + ' breakpoint table 0.1:1000':<38}{len(cap.graph):>7}{'auto':>12}{table_ms:>12.2f}"
            f"{'':>10}  ({len(table.entries)} entries)"
        )
        print(
            f"{name + ' breakpoint lookup':<38}{'':>7}{'bisect':>12}{lookup_us * 1e-3:>12.5f}"
            f"{'50 µs':>10}  ({lookup_us:.2f} µs)"
        )

    rng = np.random.default_rng(0)
    graph = random_dag(2000, rng, max_fan_in=3, window=8)
    cost = CostModel(
        graph,
        DEVICES.get("jetson-orin-nano"),
        DEVICES.get("x86-server"),
        NETWORKS.get("wifi"),
        "int8",
    )
    for bw in (1.0, 3.0, 10.0, 100.0):
        problem = make_problem(cost, "latency", bw)
        ms = timed(lambda problem=problem: SOLVERS.get("mincut")(problem), 5)
        cut = solve(cost, "latency", "mincut", bw)
        on_edge = len(cut.edge_nodes)
        print(
            f"{f'synthetic DAG latency @ {bw:g} Mbit/s':<38}{len(graph):>7}{'mincut':>12}{ms:>12.2f}"
            f"{'1000 ms':>10}  ({on_edge} nodes on the edge)"
        )


if __name__ == "__main__":
    main()
