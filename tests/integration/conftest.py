"""Fixtures for cross-package runs: repositories of real zoo networks and cloud nodes.

resnet18 and googlenet at their 32x32 test shape. resnet18 holds two cuts under a hand-made
table (layer3 below 4 Mbit/s, layer1 above; the adaptive test moves between them) plus the
cloud-only cut standard clients use; googlenet holds a cut that two tensors cross.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from cloud_node.server import CloudConfig, CloudNode
from partitioner.planner import Planner
from partitioner.publish import build_repository, manual_table

RESNET_BANDS = [(0.1, 4.0, "layer3.1.relu2"), (4.0, 1000.0, "layer1.1.relu2")]
GOOGLENET_CUT = "inception3a.branch2.1.relu"  # crossed by maxpool2 and this branch's output


@dataclass(frozen=True)
class Repo:
    root: Path
    name: str
    module: Any
    input_shape: tuple[int, ...]

    def reference(self, x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return self.module(torch.from_numpy(x)).numpy()


@pytest.fixture(scope="session")
def resnet_repo(tmp_path_factory: pytest.TempPathFactory) -> Repo:
    planner = Planner.create("resnet18", input_shape=(1, 3, 32, 32))
    root = tmp_path_factory.mktemp("resnet-repository")
    build_repository(
        planner,
        root,
        table=manual_table(planner, RESNET_BANDS),
        plans=[planner.cut_after("x")],  # version 3: cloud-only, the whole network as tail
        default_bandwidth_mbps=100.0,
    )
    return Repo(root, "resnet18", planner.loaded.module, (1, 3, 32, 32))


@pytest.fixture(scope="session")
def googlenet_repo(tmp_path_factory: pytest.TempPathFactory) -> Repo:
    planner = Planner.create("googlenet", input_shape=(1, 3, 32, 32))
    root = tmp_path_factory.mktemp("googlenet-repository")
    build_repository(planner, root, plans=[planner.cut_after(GOOGLENET_CUT)])
    return Repo(root, "googlenet", planner.loaded.module, (1, 3, 32, 32))


@pytest.fixture
def start_cloud() -> Iterator[Callable[..., tuple[CloudNode, str]]]:
    """start_cloud(repository, **config) -> (node, "127.0.0.1:port"); stopped at teardown."""
    nodes: list[CloudNode] = []

    def start(repository: Path, **overrides: Any) -> tuple[CloudNode, str]:
        node = CloudNode(CloudConfig(repository=repository, port=0, threads=1, **overrides))
        nodes.append(node)
        return node, f"127.0.0.1:{node.start()}"

    yield start
    for node in nodes:
        node.stop(grace_s=0)


@pytest.fixture
def free_port() -> Callable[[], int]:
    def pick() -> int:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return int(s.getsockname()[1])

    return pick


def node_env() -> dict[str, str]:
    """Environment for node subprocesses: one quiet OpenMP thread (the host is shared)."""
    return {**os.environ, "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE"}


@dataclass
class CloudProcess:
    """`edgecut cloud serve` in a subprocess, waited for until it wrote its port file."""

    proc: subprocess.Popen[str]
    port: int
    log: Path

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=30)

    def terminate(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()


def _spawn(
    args: list[str], workdir: Path, *, prefix: list[str] | None = None, timeout_s: float = 120
) -> CloudProcess:
    port_file = workdir / f"port-{time.monotonic_ns()}"
    log = port_file.with_suffix(".log")
    cmd = [
        *(prefix or []),
        sys.executable, "-m", "edgecut.cli", "cloud", "serve", "--threads", "1",
        "--port-file", str(port_file), *args,
    ]  # fmt: skip
    with log.open("w") as out:
        proc = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, text=True, env=node_env()
        )
    deadline = time.monotonic() + timeout_s
    while not port_file.exists():
        if proc.poll() is not None:
            raise AssertionError(f"cloud node exited {proc.returncode}:\n{log.read_text()[-3000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(
                f"cloud node did not start in {timeout_s} s:\n{log.read_text()[-3000:]}"
            )
        time.sleep(0.1)
    return CloudProcess(proc, int(port_file.read_text()), log)


@pytest.fixture
def spawn_cloud(tmp_path: Path) -> Iterator[Callable[..., CloudProcess]]:
    """spawn_cloud(args, prefix=None) -> a running `edgecut cloud serve` process.

    Every process started is killed at teardown, whatever happened in the test.
    """
    started: list[CloudProcess] = []

    def spawn(args: list[str], *, prefix: list[str] | None = None) -> CloudProcess:
        cloud = _spawn(args, tmp_path, prefix=prefix)
        started.append(cloud)
        return cloud

    yield spawn
    for cloud in started:
        cloud.kill()
