"""Every registered runtime: a manifest that names it loads, and preparing a half for this
host never changes what the half computes. (The int8 lowering itself is tested on a real
int8 head in tests/partitioner/compress/test_runtime.py.)"""

from __future__ import annotations

import json

import pytest
import torch

from partitioner.deploy.artifact import MANIFEST, load_split
from partitioner.deploy.export import write_split
from partitioner.deploy.runtimes import RUNTIMES
from partitioner.errors import ArtifactError
from partitioner.pricing.cost import CostModel
from partitioner.pricing.network import NETWORKS
from partitioner.pricing.profiles import DEVICES
from partitioner.solve.plan import evaluate_cut


@pytest.fixture(scope="module")
def digits_split(tmp_path_factory, captured_zoo):
    """(model, split dir) of digits_cnn cut after relu2, written once."""
    model, cap = captured_zoo("digits_cnn")
    cost = CostModel(cap.graph, DEVICES.get("rpi4"), DEVICES.get("x86-server"), NETWORKS.get("lte"))
    plan = evaluate_cut(cost, "relu2")
    return model, write_split(cap, plan, tmp_path_factory.mktemp("d") / "split")


def _naming(split, tmp_path, runtime: object):
    """A copy of the split whose manifest names ``runtime`` for both halves."""
    out = tmp_path / "split"
    out.mkdir()
    for f in split.iterdir():
        out.joinpath(f.name).write_bytes(f.read_bytes())
    manifest = json.loads((out / MANIFEST).read_text())
    manifest["runtime"] = {"head.pt2": runtime, "tail.pt2": runtime}
    (out / MANIFEST).write_text(json.dumps(manifest))
    return out


@pytest.mark.parametrize("name", RUNTIMES.names())
def test_every_runtime_loads_a_split_without_changing_its_outputs(
    digits_split, tmp_path, name: str
) -> None:
    model, split = digits_split
    RUNTIMES.get(name).register_ops()  # registering twice (here and in load) is harmless
    art = load_split(_naming(split, tmp_path, name))
    assert set(art.runtime) == {"head.pt2", "tail.pt2"}
    assert all(art.runtime.values()), "a runtime says what it did to each half"
    x = torch.randn((5, 1, 8, 8), generator=torch.Generator().manual_seed(3))  # any batch
    with torch.inference_mode():
        want = model(x)
    (got,) = art.run(x)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("runtime", ["no-such-runtime", 7])
def test_a_manifest_naming_an_unknown_runtime_is_refused(digits_split, tmp_path, runtime) -> None:
    _, split = digits_split
    with pytest.raises(ArtifactError, match="runtime"):
        load_split(_naming(split, tmp_path, runtime))
