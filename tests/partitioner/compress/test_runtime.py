"""The pt2e-int8 runtime (partitioner.deploy.runtimes) on the int8 head that compress writes:
it loads through the ordinary loading path, lowered to oneDNN where this host allows."""

from __future__ import annotations

import json
import platform
import shutil
import subprocess
import sys

import pytest
import torch

from partitioner.deploy.artifact import load_half, load_split
from partitioner.deploy.runtimes import PT2E_INT8, x86_lowering_available
from partitioner.errors import ArtifactError

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")


def _expected_runtime() -> str:
    if x86_lowering_available():  # one int8 convolution per conv of the head
        return "int8 lowered to oneDNN kernels (x86, 3 int8 ops)"
    return f"int8 reference graph (no int8 lowering for {platform.machine()})"


def test_int8_head_is_lowered_where_loaded(compressed, digits) -> None:
    _, out = compressed("int8")
    art = load_split(out)
    assert art.manifest["runtime"] == {"head.pt2": PT2E_INT8}
    assert art.runtime["head.pt2"] == _expected_runtime()
    kernels = [
        str(n.target)
        for n in art.head.graph.nodes
        if n.op == "call_function" and str(n.target).startswith("onednn.")
    ]
    if x86_lowering_available():  # conv1, conv2, conv3 (batch norm folded in by PT2E)
        assert kernels == ["onednn.qconv_pointwise.default"] * 3
    else:
        assert kernels == []
    x = digits[1].x_test[:5]
    reference = load_half(out / "head.pt2")  # no runtime named: the portable q/dq graph
    with torch.inference_mode():
        lowered, plain = art.run_head(x)[0], reference(x)[0]
    assert float((lowered - plain).abs().max()) <= 0.05 * float(plain.abs().max())


def test_fresh_process_loads_int8_split_without_torchao(compressed) -> None:
    _, out = compressed("int8")
    code = (
        "import sys, torch\n"
        "from partitioner.deploy.artifact import load_split\n"
        f"art = load_split({str(out)!r})\n"
        "y = art.run(torch.zeros(3, 1, 8, 8))[0]\n"
        "print(tuple(y.shape), 'torchao' in sys.modules, art.runtime['head.pt2'])\n"
    )
    env_out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True
    ).stdout
    assert env_out == f"(3, 10) False {_expected_runtime()}\n"


def test_unknown_runtime_is_refused(compressed, tmp_path) -> None:
    _, out = compressed("int8")
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["runtime"] = {"head.pt2": "tensorrt-fp8"}
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match=r"unknown runtime 'tensorrt-fp8'.*pt2e-int8"):
        load_split(copy)
    manifest["runtime"] = ["head.pt2"]
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match="'runtime'") as info:  # names the field, one line
        load_split(copy)
    assert "\n" not in str(info.value)
