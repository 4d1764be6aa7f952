"""Split artifacts: export, verified load, head->tail equality, and refusals."""

from __future__ import annotations

import json
import shutil
import zipfile

import pytest
import torch

from partitioner.deploy.artifact import load_split, read_manifest
from partitioner.deploy.export import write_split
from partitioner.errors import ArtifactError
from partitioner.pricing.cost import CostModel
from partitioner.pricing.network import NETWORKS
from partitioner.pricing.profiles import DEVICES
from partitioner.solve.plan import evaluate_cut, make_plan


def _cost(cap):
    return CostModel(cap.graph, DEVICES.get("rpi4"), DEVICES.get("x86-server"), NETWORKS.get("lte"))


@pytest.fixture(scope="module")
def googlenet_split(tmp_path_factory, captured_zoo):
    model, cap = captured_zoo("googlenet")
    plan = evaluate_cut(_cost(cap), "inception3a.branch2.1.relu")
    out = write_split(cap, plan, tmp_path_factory.mktemp("g") / "split", model_spec="googlenet")
    return model, cap, plan, out


def test_multi_tensor_cut_round_trips_and_equals_the_model(googlenet_split) -> None:
    model, cap, plan, out = googlenet_split
    art = load_split(out)
    names = [t.name for t in art.crossing]
    assert len(names) >= 2 and names == [t.name for t in plan.cut]
    x = torch.randn(4, *cap.input_shape[1:])  # batch 4: the halves accept any batch
    with torch.inference_mode():
        want = model(x)
    (got,) = art.run(x)
    assert float((got - want).abs().max() / want.abs().max()) < 1e-4
    mid = art.run_head(x)
    for spec, t in zip(art.crossing, mid, strict=True):
        assert list(t.shape[1:]) == list(spec.shape[1:]) and t.shape[0] == 4


def test_manifest_describes_the_split(googlenet_split) -> None:
    _, cap, plan, out = googlenet_split
    m = read_manifest(out)
    assert m["model"] == "googlenet" and m["dynamic_batch"] is True
    assert m["inputs"][0]["name"] == "x" and m["inputs"][0]["shape"] == list(cap.input_shape)
    assert [t["name"] for t in m["crossing"]] == [t.name for t in plan.cut]
    assert m["outputs"][0]["shape"] == [1, 1000]
    assert set(m["files"]) == {"head.pt2", "tail.pt2"}
    assert all(len(f["sha256"]) == 64 for f in m["files"].values())
    assert m["plan"]["edge_nodes"] == list(plan.edge_nodes)


def test_altered_file_is_refused(googlenet_split, tmp_path) -> None:
    *_, out = googlenet_split
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    with (copy / "tail.pt2").open("r+b") as f:
        f.seek(100)
        f.write(b"\x00\x01\x02")
    with pytest.raises(ArtifactError, match="tail.pt2 sha256"):
        load_split(copy)
    (copy / "head.pt2").unlink()
    with pytest.raises(ArtifactError, match="head.pt2 is listed but missing"):
        load_split(copy)


def test_pickled_payload_is_refused_before_loading(googlenet_split, tmp_path) -> None:
    *_, out = googlenet_split
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    head = copy / "head.pt2"
    rewritten = tmp_path / "head.pt2"
    with zipfile.ZipFile(head) as src, zipfile.ZipFile(rewritten, "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename.endswith("model_weights_config.json"):
                config = json.loads(data)
                for entry in config["config"].values():
                    entry["use_pickle"] = True
                data = json.dumps(config).encode()
            dst.writestr(info, data)
    shutil.move(rewritten, head)
    manifest = json.loads((copy / "manifest.json").read_text())
    from partitioner.deploy.files import sha256_file

    manifest["files"]["head.pt2"]["sha256"] = sha256_file(head)
    manifest["files"]["head.pt2"]["bytes"] = head.stat().st_size
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match="use_pickle is True; torch would unpickle it"):
        load_split(copy)


def test_not_an_artifact(tmp_path) -> None:
    with pytest.raises(ArtifactError, match="no manifest.json"):
        load_split(tmp_path)
    (tmp_path / "manifest.json").write_text('{"format": "other"}')
    with pytest.raises(ArtifactError, match="field 'format': Input should be 'edgecut-split'"):
        load_split(tmp_path)


@pytest.mark.parametrize("where", ["edge-only", "cloud-only"])
def test_edge_only_and_cloud_only_splits(captured_zoo, tmp_path, where: str) -> None:
    model, cap = captured_zoo("resnet18")
    cost = _cost(cap)
    edge = cost.edge_only() if where == "edge-only" else cost.cloud_only()
    plan = evaluate_cut(cost, [n.name for n in cap.graph.nodes if n.name in edge][-1])
    out = write_split(cap, plan, tmp_path / where)
    art = load_split(out)
    assert (art.tail is None) == (where == "edge-only")
    x = torch.randn(2, *cap.input_shape[1:])
    with torch.inference_mode():
        want = model(x)
    torch.testing.assert_close(art.run(x)[0], want, rtol=1e-4, atol=1e-5)


def test_solved_plan_splits(captured_zoo, tmp_path) -> None:
    model, cap = captured_zoo("mobilenet_v2")
    plan = make_plan(_cost(cap), bandwidth_mbps=2.0)
    art = load_split(write_split(cap, plan, tmp_path / "m"))
    x = torch.randn(1, *cap.input_shape[1:])
    with torch.inference_mode():
        torch.testing.assert_close(art.run(x)[0], model(x), rtol=1e-4, atol=1e-5)


def test_manifests_say_where_the_batch_is_and_old_ones_mean_dim_0(
    googlenet_split, tmp_path
) -> None:
    *_, out = googlenet_split
    m = read_manifest(out)
    assert all(t["batch_dim"] == 0 for t in (*m["inputs"], *m["crossing"], *m["outputs"]))
    # A manifest written before batch_dim: the field is absent, and it loads as dim 0.
    old = tmp_path / "old"
    shutil.copytree(out, old)
    for field in ("inputs", "crossing", "outputs"):
        for t in m[field]:
            del t["batch_dim"]
    for t in m["plan"]["cut"]:
        t.pop("batch_dim", None)
    (old / "manifest.json").write_text(json.dumps(m))
    art = load_split(old)
    assert [t.batch_dim for t in art.crossing] == [0] * len(m["crossing"])
    m["crossing"][0]["batch_dim"] = 4  # rank 4 (N, C, H, W): no dim 4
    (old / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(
        ArtifactError, match="field 'crossing.0': batch_dim 4 is not a dim of shape"
    ):
        read_manifest(old)


def test_a_sequence_first_cut_exports_its_batch_dim(tmp_path) -> None:
    """Inside a sequence-first encoder the crossing tensor is (S, B, E): the manifest says dim
    1, and the exported halves take any batch there."""
    from torch import nn

    from partitioner.model.capture import capture

    class SequenceFirst(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.layer = nn.TransformerEncoderLayer(8, 2, dim_feedforward=16)

        def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, S, E)
            return self.layer(x.transpose(0, 1)).transpose(0, 1)

    torch.manual_seed(0)
    model = SequenceFirst().eval()
    cap = capture(model, torch.randn(1, 5, 8))
    relu = next(n.name for n in cap.graph.nodes if n.op == "relu")
    art = load_split(write_split(cap, evaluate_cut(_cost(cap), relu), tmp_path / "sf"))
    assert [(t.shape, t.batch_dim) for t in art.crossing] == [((5, 1, 8), 1), ((5, 1, 16), 1)]
    x = torch.randn(3, 5, 8)
    mid = art.run_head(x)
    assert [tuple(t.shape) for t in mid] == [(5, 3, 8), (5, 3, 16)]
    with torch.inference_mode():
        want = model(x)
    torch.testing.assert_close(art.run_tail(*mid)[0], want, rtol=1e-4, atol=1e-5)
