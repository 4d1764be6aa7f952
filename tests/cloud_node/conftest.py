"""Fixtures for the cloud node tests: a small repository, running nodes, clients, certificates.

The repository holds digits_cnn (1x1x8x8 frames, exports in about a second) with two cuts and
a hand-made breakpoint table, so every test runs real split artifacts quickly. Servers bind
127.0.0.1:0 and are stopped in teardown.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from cloud_node.server import CloudConfig, CloudNode
from partitioner.deploy.artifact import load_split
from partitioner.planner import Planner
from partitioner.publish import build_repository, manual_table
from protos import transport
from protos.inference import grpc_service_pb2_grpc as pb_grpc

MODEL = "digits_cnn"
# Version 1 (low bandwidth) crosses after pool2 (128x2x2), version 2 after relu1 (32x8x8).
BANDS = [(0.1, 1.0, None), (1.0, 10.0, "pool2"), (10.0, 1000.0, "relu1")]


@dataclass(frozen=True)
class Repo:
    root: Path
    model: Any  # the whole network (reference outputs)

    def artifact(self, version: str) -> Any:
        return load_split(self.root / MODEL / version)

    def reference(self, x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return self.model(torch.from_numpy(x)).numpy()


@pytest.fixture(scope="session")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Repo:
    planner = Planner.create(MODEL)
    root = tmp_path_factory.mktemp("repository")
    build_repository(planner, root, table=manual_table(planner, BANDS), default_bandwidth_mbps=5.0)
    return Repo(root, planner.loaded.module)


@dataclass
class Running:
    node: CloudNode
    port: int

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stub(self, **channel: Any) -> Any:
        return pb_grpc.GRPCInferenceServiceStub(transport.build_channel(self.target, **channel))


@pytest.fixture
def start_cloud(repo: Repo) -> Iterator[Callable[..., Running]]:
    """start_cloud(**config) -> a running CloudNode on 127.0.0.1:0 (stopped at teardown)."""
    nodes: list[CloudNode] = []

    def start(**overrides: Any) -> Running:
        settings: dict[str, Any] = {"repository": repo.root, "port": 0, "threads": 1}
        settings.update(overrides)
        node = CloudNode(CloudConfig(**settings))
        nodes.append(node)
        return Running(node, node.start())

    yield start
    for node in nodes:
        node.stop(grace_s=0)


@pytest.fixture(scope="module")
def shared_cloud(repo: Repo) -> Iterator[Running]:
    """One node with default settings for the tests that only read from it."""
    node = CloudNode(
        CloudConfig(repository=repo.root, port=0, threads=1, max_request_bytes=1024 * 1024)
    )
    try:
        yield Running(node, node.start())
    finally:
        node.stop(grace_s=0)
