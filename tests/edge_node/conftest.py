"""Fixtures for the edge node tests: a small repository and a cloud node serving it.

digits_cnn (1x1x8x8 frames) with two cuts and a hand-made table whose lowest band is
edge-only, so fixed cuts, codecs, probes, switching and fallback all run in seconds.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from cloud_node.server import CloudConfig, CloudNode
from edge_node.heads import EdgeModel
from partitioner.deploy.repository import open_model
from partitioner.planner import Planner
from partitioner.publish import build_repository, manual_table

# Version 1 crosses after pool2 (1-10 Mbit/s), version 2 after relu1 (above 10).
BANDS = [(0.1, 1.0, None), (1.0, 10.0, "pool2"), (10.0, 1000.0, "relu1")]


@dataclass(frozen=True)
class Repo:
    root: Path
    module: Any

    def reference(self, x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return self.module(torch.from_numpy(x)).numpy()


@pytest.fixture(scope="session")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Repo:
    planner = Planner.create("digits_cnn")
    root = tmp_path_factory.mktemp("edge-repository")
    build_repository(planner, root, table=manual_table(planner, BANDS), default_bandwidth_mbps=5.0)
    return Repo(root, planner.loaded.module)


@pytest.fixture(scope="session")
def edge_model(repo: Repo) -> EdgeModel:
    return EdgeModel.load(open_model(repo.root))


@pytest.fixture(scope="module")
def cloud(repo: Repo) -> Iterator[str]:
    node = CloudNode(CloudConfig(repository=repo.root, port=0, threads=1))
    port = node.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        node.stop(grace_s=0)


@pytest.fixture
def closed_port() -> str:
    """An address where nothing listens (a port just released by the kernel)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"127.0.0.1:{port}"
