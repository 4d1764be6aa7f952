"""A real kernel bandwidth limit: the cloud node runs in a network namespace behind a veth
pair whose edge-to-cloud direction is shaped with ``tc qdisc ... tbf`` (the testbed's
:class:`~edgecut.testbed.link.Link`, its edge end in this process's namespace so the edge node
runs in the test), and the edge's estimate must follow the shaped rate as it changes.

Needs root and the ``ip`` and ``tc`` commands (skipped with the reason otherwise). Traffic
goes only to the namespace this test creates; the link removes everything afterwards.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from edge_node.client import CloudClient
from edge_node.heads import EdgeModel
from edge_node.node import EdgeConfig, EdgeNode
from edge_node.sources import SyntheticSource
from edgecut.testbed.link import Link, TestbedError, check_root
from partitioner.deploy.repository import open_model
from partitioner.planner import Planner
from partitioner.publish import build_repository

pytestmark = pytest.mark.root

RATES_MBIT = (4, 16)
FRAMES_PER_RATE = 12


@pytest.fixture
def link() -> Iterator[Link]:
    """A shaped link whose edge end is in this process's namespace; removed afterwards."""
    try:
        check_root()
    except TestbedError as exc:
        pytest.skip(str(exc))
    with Link.create(RATES_MBIT[0], edge_in_root=True) as made:
        yield made


def test_the_estimate_tracks_a_tbf_shaped_uplink(
    link: Link, spawn_cloud: Callable[..., Any], tmp_path: Path
) -> None:
    address = link.cloud_address
    # resnet18 at 64x64 sent whole (cloud-only): 48 KB of fp32 per frame.
    planner = Planner.create("resnet18", input_shape=(1, 3, 64, 64))
    repo = tmp_path / "repository"
    build_repository(planner, repo, plans=[planner.cut_after("x")], with_local=False)
    cloud = spawn_cloud(
        ["--repository", str(repo), "--host", address, "--port", "0"],
        prefix=link.exec_argv([], "cloud"),
    )
    model = EdgeModel.load(open_model(repo))
    frames = iter(SyntheticSource((1, 3, 64, 64), frames=1000, seed=1))
    estimates: dict[int, float] = {}
    with CloudClient(f"{address}:{cloud.port}") as client:
        node = EdgeNode(model, client, EdgeConfig(version="1", deadline_ms=30_000))
        for rate in RATES_MBIT:
            link.set_rate(rate)
            for _ in range(FRAMES_PER_RATE):
                result = node.process(next(frames))
                assert result.where == "cloud", result.error
            estimates[rate] = node.estimator.mbps
    print(f"shaped -> estimated Mbit/s: {estimates}")
    for rate, estimate in estimates.items():
        # TCP/HTTP2 overhead lowers the estimate a little, tbf's burst raises it a little.
        assert 0.5 * rate <= estimate <= 2.0 * rate, estimates
    assert estimates[16] > 2 * estimates[4]
