"""Solvers against the exhaustive reference on random DAGs (hypothesis) and on zoo models."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from partitioner.errors import EdgecutError
from partitioner.model.synthetic import random_dag
from partitioner.pricing.cost import CostModel, LinearCost, StageCosts
from partitioner.pricing.network import NETWORKS
from partitioner.pricing.profiles import DEVICES
from partitioner.solve import solve
from partitioner.solve.exhaustive import MAX_FREE_NODES
from partitioner.solve.problem import SOLVERS, CutProblem, SolverError, make_problem

REL = 1e-9


def _problem(seed: int, n: int, objective: str, *, chain: bool = False) -> CutProblem:
    rng = np.random.default_rng(seed)
    graph = random_dag(n, rng, chain=chain, window=int(rng.integers(1, 8)), output_prob=0.15)
    # Edge ops slower than cloud ops by a random factor; crossing prices spread widely so
    # every kind of cut wins somewhere.
    edge = rng.gamma(2.0, 2.0, n) * (rng.random(n) < 0.9)
    cloud = edge * rng.uniform(0.05, 1.5, n)
    cross = rng.gamma(1.0, 3.0, n) * rng.uniform(0.1, 3.0)
    stages = StageCosts(
        edge, cloud, rng.random(n) * 0.2, rng.random(n) * 0.2, cross, float(rng.uniform(0, 5))
    )
    linear = None
    if objective != "throughput":
        linear = LinearCost(edge, cloud, cross + stages.encode_ms + stages.decode_ms, stages.rtt_ms)
    return CutProblem(graph, objective, linear, stages)


def _value(p: CutProblem, edge: frozenset[str]) -> float:
    return p.value(p.graph.mask(edge))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(2, 20),
    objective=st.sampled_from(["latency", "energy"]),
)
def test_mincut_equals_exhaustive_on_random_dags(seed: int, n: int, objective: str) -> None:
    p = _problem(seed, n, objective)
    exact = SOLVERS.get("exhaustive")(p)
    cut = SOLVERS.get("mincut")(p)
    assert p.graph.is_closed(cut) and p.graph.is_closed(exact)
    v_exact, v_cut = _value(p, exact), _value(p, cut)
    assert v_cut == pytest.approx(v_exact, rel=REL, abs=1e-12)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(2, 20))
def test_throughput_relaxation_is_closed_and_never_below_the_optimum(seed: int, n: int) -> None:
    # Throughput is a max of three stage sums, not a cut function: min-cut only
    # searches weighted sums of the stages, so it may miss the optimum, never beat it.
    p = _problem(seed, n, "throughput")
    exact = _value(p, SOLVERS.get("exhaustive")(p))
    for name in ("mincut", "chain", "auto"):
        cut = SOLVERS.get(name)(p)
        assert p.graph.is_closed(cut)
        assert _value(p, cut) >= exact * (1 - REL)
    assert _value(p, SOLVERS.get("auto")(p)) == pytest.approx(
        exact, rel=REL
    )  # auto: exhaustive here


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(2, 40),
    objective=st.sampled_from(["latency", "energy", "throughput"]),
)
def test_chain_scan_is_exact_on_chains(seed: int, n: int, objective: str) -> None:
    p = _problem(seed, n, objective, chain=True)
    assert p.graph.is_chain
    best = SOLVERS.get("chain")(p)
    if n - 1 <= MAX_FREE_NODES:
        assert _value(p, best) == pytest.approx(_value(p, SOLVERS.get("exhaustive")(p)), rel=REL)
    if objective != "throughput":
        assert _value(p, SOLVERS.get("mincut")(p)) == pytest.approx(_value(p, best), rel=REL)


@pytest.mark.parametrize("solver", [s for s in SOLVERS.names() if s != "exhaustive"])
@pytest.mark.parametrize("objective", ["latency", "energy", "throughput"])
def test_every_registered_solver_is_closed_and_no_better_than_optimal(
    solver: str, objective: str
) -> None:
    for seed in range(25):
        p = _problem(seed, 14, objective)
        exact = _value(p, SOLVERS.get("exhaustive")(p))
        cut = SOLVERS.get(solver)(p)
        assert p.graph.is_closed(cut)
        assert _value(p, cut) >= exact * (1 - REL)


def test_exhaustive_refuses_large_graphs() -> None:
    p = _problem(0, MAX_FREE_NODES + 2, "latency")
    with pytest.raises(SolverError, match="refuses"):
        SOLVERS.get("exhaustive")(p)


def test_unknown_solver_and_objective() -> None:
    with pytest.raises(EdgecutError, match="unknown solver 'mincutt'.*mincut"):
        SOLVERS.get("mincutt")
    p = _problem(0, 5, "latency")
    cost = CostModel(p.graph, DEVICES.get("rpi4"), DEVICES.get("a100"), NETWORKS.get("lte"))
    with pytest.raises(EdgecutError, match="unknown objective"):
        make_problem(cost, "speed")


@pytest.mark.parametrize("name", ["resnet18", "googlenet", "mobilenet_v2"])
def test_mincut_matches_chain_scan_or_beats_it_on_zoo_dags(captured_zoo, name: str) -> None:
    _, cap = captured_zoo(name, (1, 3, 224, 224))
    for edge_dev, cloud_dev in [("rpi4", "x86-server"), ("jetson-nano", "a100")]:
        cost = CostModel(
            cap.graph, DEVICES.get(edge_dev), DEVICES.get(cloud_dev), NETWORKS.get("lte"), "int8"
        )
        for bw in (0.5, 5.0, 50.0, 500.0):
            mc = solve(cost, "latency", "mincut", bw)
            ch = solve(cost, "latency", "chain", bw)
            assert cap.graph.is_closed(mc.edge_nodes)
            assert mc.value <= ch.value * (1 + REL)
            # and the reported value is the cost model's own prediction of that cut
            assert mc.value == pytest.approx(cost.predict(mc.edge_nodes, bw).total_ms, rel=REL)
