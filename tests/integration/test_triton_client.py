"""tritonclient.grpc, unchanged, against the cloud node: health, metadata and inference.

tritonclient runs in a subprocess (triton_node_peer.py): it cannot share a process with
protos.inference (both register the protobuf package ``inference``).
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from partitioner.deploy.artifact import load_split

PEER = Path(__file__).with_name("triton_node_peer.py")


@pytest.mark.parametrize("version", ["1", "3"])  # a mid cut, and the cloud-only cut
def test_tritonclient_reaches_the_cloud_node(
    resnet_repo: Any, start_cloud: Callable[..., Any], tmp_path: Path, version: str
) -> None:
    if importlib.util.find_spec("tritonclient") is None:
        pytest.skip("tritonclient[grpc] is a test dependency")
    _, target = start_cloud(resnet_repo.root, tokens=("s3cret",))
    artifact = load_split(resnet_repo.root / "resnet18" / version)
    x = np.random.default_rng(4).standard_normal((2, 3, 32, 32), dtype=np.float32)
    crossing = [t.numpy() for t in artifact.run_head(torch.from_numpy(x))]
    names = [t.name for t in artifact.crossing]
    np.savez(tmp_path / "inputs.npz", **dict(zip(names, crossing, strict=True)))  # type: ignore[arg-type]
    config = tmp_path / "triton.json"
    config.write_text(
        json.dumps(
            {
                "url": target,
                "model": "resnet18",
                "version": version,
                "output": "fc",
                "token": "s3cret",
                "inputs": str(tmp_path / "inputs.npz"),
            }
        )
    )
    proc = subprocess.run(
        [sys.executable, str(PEER), str(config)], capture_output=True, text=True, timeout=180
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    seen = json.loads(config.with_suffix(".out.json").read_text())
    assert seen["live"] is True and seen["ready"] is True and seen["model_ready"] is True
    meta = seen["metadata"]
    assert meta["name"] == "resnet18" and meta["versions"] == ["1", "2", "3"]
    assert [(t["name"], t["datatype"]) for t in meta["inputs"]] == [(n, "FP32") for n in names]
    assert meta["outputs"][0]["name"] == "fc" and meta["outputs"][0]["shape"] == ["-1", "1000"]
    assert seen["id"] == "triton-1"
    assert "NOT_FOUND" in seen["unknown_model_status"]
    got = np.load(config.with_suffix(".out.npy"))
    (want,) = (t.numpy() for t in artifact.run_tail(*(torch.from_numpy(c) for c in crossing)))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
