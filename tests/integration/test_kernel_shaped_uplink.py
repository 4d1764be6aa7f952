"""A real kernel bandwidth limit: the cloud node runs in a network namespace behind a veth
pair whose edge-to-cloud direction is shaped with ``tc qdisc ... tbf``, and the edge's
estimate must follow the shaped rate as it changes.

Needs root and the ``ip`` and ``tc`` commands (skipped with the reason otherwise). Traffic
goes only to the namespace this test creates; everything is removed in ``finally``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from edge_node.client import CloudClient
from edge_node.heads import EdgeModel
from edge_node.node import EdgeConfig, EdgeNode
from edge_node.sources import SyntheticSource
from partitioner.deploy.repository import open_model
from partitioner.planner import Planner
from partitioner.publish import build_repository

pytestmark = pytest.mark.root

RATES_MBIT = (4, 16)
FRAMES_PER_RATE = 12


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=30, check=check)


@pytest.fixture
def namespace() -> Iterator[tuple[str, str, str]]:
    """(namespace, host-side veth, cloud address) for a fresh namespace; removed afterwards."""
    if os.geteuid() != 0:
        pytest.skip("needs root to create a network namespace and shape it with tc")
    missing = [tool for tool in ("ip", "tc") if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"needs the {' and '.join(missing)} command(s) (iproute2)")
    tag = os.getpid() % 100_000
    ns, host_if, ns_if = f"edgecut-{tag}", f"ecut{tag}a", f"ecut{tag}b"
    subnet = f"10.211.{tag % 250}"
    assert f"{subnet}." not in _ip("ip", "-o", "addr").stdout, f"{subnet}.0/30 is in use here"
    try:
        _ip("ip", "netns", "add", ns)
        _ip("ip", "link", "add", host_if, "type", "veth", "peer", "name", ns_if)
        _ip("ip", "link", "set", ns_if, "netns", ns)
        _ip("ip", "addr", "add", f"{subnet}.1/30", "dev", host_if)
        _ip("ip", "link", "set", host_if, "up")
        _ip("ip", "netns", "exec", ns, "ip", "addr", "add", f"{subnet}.2/30", "dev", ns_if)
        _ip("ip", "netns", "exec", ns, "ip", "link", "set", ns_if, "up")
        _ip("ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up")
        yield ns, host_if, f"{subnet}.2"
    finally:
        _ip("ip", "link", "del", host_if, check=False)
        _ip("ip", "netns", "del", ns, check=False)


def _shape(host_if: str, rate_mbit: int, verb: str) -> None:
    # A small burst so that each frame's bytes really wait for the rate (a 48 KB request is
    # mostly above it); a queue deep enough that nothing is dropped.
    _ip("tc", "qdisc", verb, "dev", host_if, "root", "tbf", "rate", f"{rate_mbit}mbit",
        "burst", "10kb", "latency", "1s")  # fmt: skip


def test_the_estimate_tracks_a_tbf_shaped_uplink(
    namespace: tuple[str, str, str], spawn_cloud: Callable[..., Any], tmp_path: Path
) -> None:
    ns, host_if, address = namespace
    # resnet18 at 64x64 sent whole (cloud-only): 48 KB of fp32 per frame.
    planner = Planner.create("resnet18", input_shape=(1, 3, 64, 64))
    repo = tmp_path / "repository"
    build_repository(planner, repo, plans=[planner.cut_after("x")], with_local=False)
    cloud = spawn_cloud(
        ["--repository", str(repo), "--host", address, "--port", "0"],
        prefix=["ip", "netns", "exec", ns],
    )
    model = EdgeModel.load(open_model(repo))
    frames = iter(SyntheticSource((1, 3, 64, 64), frames=1000, seed=1))
    estimates: dict[int, float] = {}
    with CloudClient(f"{address}:{cloud.port}") as client:
        node = EdgeNode(model, client, EdgeConfig(version="1", deadline_ms=30_000))
        for i, rate in enumerate(RATES_MBIT):
            _shape(host_if, rate, "add" if i == 0 else "change")
            for _ in range(FRAMES_PER_RATE):
                result = node.process(next(frames))
                assert result.where == "cloud", result.error
            estimates[rate] = node.estimator.mbps
    print(f"shaped -> estimated Mbit/s: {estimates}")
    for rate, estimate in estimates.items():
        # TCP/HTTP2 overhead lowers the estimate a little, tbf's burst raises it a little.
        assert 0.5 * rate <= estimate <= 2.0 * rate, estimates
    assert estimates[16] > 2 * estimates[4]
