"""A real Triton in the loop: the edge node streams through NVIDIA's Triton server (bundled by
PyTriton) serving a tail exported with ``edgecut repository export --format triton``.

PyTriton pins numpy<2 and protobuf<7, so it lives in a virtual environment of its own;
``EDGECUT_PYTRITON_PYTHON`` names that interpreter (``docs/triton.md`` shows how to make
one). Without it, and without pytriton importable here, the test skips and says so.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edge_node.client import CloudClient, CloudError
from edge_node.heads import EdgeModel
from edge_node.node import EdgeConfig, EdgeNode
from edge_node.sources import SyntheticSource
from partitioner.deploy.repository import open_model
from partitioner.triton_export import export_triton

PEER = Path(__file__).parents[2] / "benchmarks" / "peers" / "pytriton_serve.py"
VERSION = "2"  # resnet_repo's cut after layer1.1.relu2


@pytest.fixture(scope="session")  # before the session's repositories are built
def pytriton_python() -> str:
    """The interpreter that runs PyTriton; skips (before any model is built) without one."""
    given = os.environ.get("EDGECUT_PYTRITON_PYTHON")
    if given:
        return given
    if importlib.util.find_spec("pytriton") is not None:
        return sys.executable
    pytest.skip(
        "pytriton is not importable here and EDGECUT_PYTRITON_PYTHON is unset: PyTriton "
        "needs its own environment (it pins numpy<2, protobuf<7); see docs/triton.md"
    )


@pytest.fixture
def triton_server(
    pytriton_python: str, resnet_repo: Any, tmp_path: Path, free_port: Callable[[], int]
) -> Iterator[str]:
    export = tmp_path / "triton"
    (exported,) = export_triton(resnet_repo.root, export, versions=[VERSION])
    assert (exported.name, exported.version) == ("resnet18", VERSION)
    grpc_port = free_port()
    ready = tmp_path / "ready"
    log = (tmp_path / "triton.log").open("wb")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [
            pytriton_python, str(PEER), str(exported.path), "--grpc-port", str(grpc_port),
            "--http-port", str(free_port()), "--metrics-port", str(free_port()),
            "--ready-file", str(ready),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 180
        while not ready.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                tail = (tmp_path / "triton.log").read_text(errors="replace")[-3000:]
                pytest.fail(f"PyTriton did not start (exit {proc.poll()}):\n{tail}")
            time.sleep(0.2)
        yield f"127.0.0.1:{grpc_port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def test_the_edge_node_streams_through_a_real_triton_unchanged(
    triton_server: str, resnet_repo: Any
) -> None:
    model = EdgeModel.load(open_model(resnet_repo.root), versions=[VERSION])
    frames = list(SyntheticSource(resnet_repo.input_shape, frames=12, seed=7))
    with CloudClient(triton_server) as client:
        assert client.model_ready("resnet18", VERSION)
        # Triton speaks OIP only: the edgecut control service (ListCuts) is not there, so
        # the edge's start-up check asks ModelReady for its version instead.
        with pytest.raises(CloudError, match="UNIMPLEMENTED"):
            client.list_cuts("resnet18")
        node = EdgeNode(
            model,
            client,
            EdgeConfig(version=VERSION, codec="none", fallback=False, deadline_ms=60_000),
        )
        results = [node.process(f) for f in frames]
    assert [r.frame_id for r in results] == list(range(len(frames)))
    for frame, result in zip(frames, results, strict=True):
        assert result.where == "cloud" and result.version == VERSION, result.error
        want = resnet_repo.reference(frame.data)
        got = result.outputs["fc"]
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
