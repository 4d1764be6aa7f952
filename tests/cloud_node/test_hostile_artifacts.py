"""A cloud node over a hostile repository and hostile uploads: no code runs, bad versions FAIL
with their reason while the good ones serve, and --trust-key admits only signed versions."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
import torch

from edgecut.cli import main
from partitioner.deploy.files import sha256_file
from partitioner.deploy.signing import generate_key_pair, load_signing_key, load_trust_key
from protos import serde, transport
from protos.edgecut.v1 import edgecut_pb2 as cpb
from protos.edgecut.v1 import edgecut_pb2_grpc as cpb_grpc

MODEL = "digits_cnn"
ADMIN = "admin-token-89ab"


class _Touch:
    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch '{self.marker}'",))


def _rewrite_tail(version: Path, edit: Callable[[dict[str, bytes]], None]) -> None:
    """Edit the members of ``version``'s tail.pt2 and make the manifest's hash match, as an
    attacker who controls the repository would."""
    tail = version / "tail.pt2"
    with zipfile.ZipFile(tail) as z:
        root = z.namelist()[0].split("/", 1)[0]
        members = {i.filename[len(root) + 1 :]: z.read(i) for i in z.infolist()}
    edit(members)
    with zipfile.ZipFile(tail, "w") as z:
        for name, data in members.items():
            z.writestr(f"{root}/{name}", data)
    manifest = json.loads((version / "manifest.json").read_text())
    manifest["files"]["tail.pt2"] = {"sha256": sha256_file(tail), "bytes": tail.stat().st_size}
    manifest.pop("signature", None)
    (version / "manifest.json").write_text(json.dumps(manifest))


def _pickled_sample_inputs(marker: Path) -> Callable[[dict[str, bytes]], None]:
    return lambda m: m.update({"data/sample_inputs/model.pt": pickle.dumps(_Touch(marker))})


def _sympy_size(marker: Path) -> Callable[[dict[str, bytes]], None]:
    def edit(members: dict[str, bytes]) -> None:
        program = json.loads(members["models/model.json"])
        meta = next(iter(program["graph_module"]["graph"]["tensor_values"].values()))
        meta["sizes"][0] = {
            "as_expr": {"expr_str": f"__import__('os').system('touch {marker}')", "hint": None}
        }
        members["models/model.json"] = json.dumps(program).encode()

    return edit


def control(cloud: Any, token: str | None = None) -> Any:
    return cpb_grpc.EdgecutServiceStub(transport.build_channel(cloud.target, token=token))


def _cuts(cloud: Any) -> dict[str, dict[str, tuple[int, str]]]:
    """model -> version -> (state, reason) from ListCuts."""
    reply = control(cloud).ListCuts(cpb.ListCutsRequest(), timeout=30)
    return {m.name: {c.version: (c.state, c.reason) for c in m.cuts} for m in reply.models}


@pytest.fixture
def hostile_repo(repo: Any, tmp_path: Path) -> tuple[Path, Path]:
    """(repository, marker): digits_cnn v1 good, v2's tail planted; three more models whose
    manifest, model.json and tail are each wrong in another way."""
    root = tmp_path / "repository"
    shutil.copytree(repo.root, root)
    marker = tmp_path / "marker"
    _rewrite_tail(root / MODEL / "2", _pickled_sample_inputs(marker))
    shutil.copytree(repo.root / MODEL, root / "no_fields")
    manifest = root / "no_fields" / "1" / "manifest.json"
    manifest.write_text(json.dumps({"format": "edgecut-split", "format_version": 1}))
    shutil.copytree(repo.root / MODEL, root / "binary_model_json")
    (root / "binary_model_json" / "model.json").write_bytes(pickle.dumps(_Touch(marker)))
    shutil.copytree(repo.root / MODEL, root / "sympy")
    _rewrite_tail(root / "sympy" / "1", _sympy_size(marker))
    return root, marker


def test_a_hostile_repository_runs_nothing_and_serves_what_is_good(
    repo: Any, hostile_repo: tuple[Path, Path], start_cloud: Callable[..., Any]
) -> None:
    root, marker = hostile_repo
    cloud = start_cloud(repository=root)
    cuts = _cuts(cloud)
    ready, failed = cpb.CUT_STATE_READY, cpb.CUT_STATE_FAILED
    assert cuts[MODEL]["1"] == (ready, "")
    state, reason = cuts[MODEL]["2"]
    assert state == failed and "member 'data/sample_inputs/model.pt'" in reason
    assert str(root / MODEL / "2") in reason
    assert (
        cuts["no_fields"]["1"][0] == failed
        and "field 'model': Field required" in (cuts["no_fields"]["1"][1])
    )
    assert cuts["no_fields"]["2"][0] == ready
    assert all(s == failed and "model.json: expected UTF-8 JSON" in r
               for s, r in cuts["binary_model_json"].values())  # fmt: skip
    assert cuts["sympy"]["1"][0] == failed and "shape expression" in cuts["sympy"]["1"][1]
    assert not marker.exists()
    # The good version answers; a failed one is UNAVAILABLE with its reason.
    x = np.random.default_rng(0).standard_normal((1, 1, 8, 8), dtype=np.float32)
    (mid,) = (t.numpy() for t in repo.artifact("1").run_head(torch.from_numpy(x)))
    msg = serde.request_to_proto(serde.InferRequest(MODEL, {"pool2": mid}, model_version="1"))
    reply = serde.response_from_proto(cloud.stub().ModelInfer(msg, timeout=60))
    np.testing.assert_allclose(reply.outputs["fc2"], repo.reference(x), rtol=1e-4, atol=1e-5)
    with pytest.raises(grpc.RpcError) as info:
        cloud.stub().ModelInfer(
            serde.request_to_proto(serde.InferRequest("sympy", {"pool2": mid}, model_version="1")),
            timeout=60,
        )
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "shape expression" in info.value.details()
    with pytest.raises(grpc.RpcError) as info:
        control(cloud).GetManifest(cpb.GetManifestRequest(model_name="no_fields", version="1"))
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert not marker.exists()


def _upload(artifact: Path, model: str) -> Iterator[cpb.DeploySplitRequest]:
    manifest = (artifact / "manifest.json").read_text()
    files = [
        cpb.FileEntry(path=name, size_bytes=meta["bytes"], sha256=meta["sha256"])
        for name, meta in json.loads(manifest)["files"].items()
    ]
    yield cpb.DeploySplitRequest(
        header=cpb.DeployHeader(model_name=model, manifest_json=manifest, files=files)
    )
    for entry in files:
        data = (artifact / entry.path).read_bytes()
        for offset in range(0, len(data), 1 << 16):
            chunk = cpb.FileChunk(
                path=entry.path, offset=offset, data=data[offset : offset + (1 << 16)]
            )
            yield cpb.DeploySplitRequest(chunk=chunk)


@pytest.mark.parametrize("plant", [_pickled_sample_inputs, _sympy_size])
def test_a_hostile_upload_runs_nothing_and_leaves_nothing(
    repo: Any, tmp_path: Path, start_cloud: Callable[..., Any], plant: Any
) -> None:
    root = tmp_path / "repository"
    shutil.copytree(repo.root, root)
    upload = tmp_path / "upload"
    shutil.copytree(repo.root / MODEL / "1", upload)
    marker = tmp_path / "marker"
    _rewrite_tail(upload, plant(marker))
    cloud = start_cloud(repository=root, admin_tokens=(ADMIN,))
    with pytest.raises(grpc.RpcError) as info:
        control(cloud, ADMIN).DeploySplit(_upload(upload, "evil"), timeout=120)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "tail.pt2: member" in info.value.details()
    assert not (root / "evil").exists() and not any((root / ".staging").iterdir())
    assert "evil" not in _cuts(cloud)
    assert not marker.exists()


@pytest.fixture
def signed_repo(repo: Any, tmp_path: Path) -> tuple[Path, Path, Path]:
    """(repository signed by the owner, owner's private key, owner's public key)."""
    root = tmp_path / "repository"
    shutil.copytree(repo.root, root)
    private, public = generate_key_pair(tmp_path / "owner.pem")
    assert main(["repository", "sign", "--repository", str(root), "--key", str(private)]) == 0
    return root, private, public


def test_a_trusting_node_serves_signed_versions_and_fails_the_rest(
    signed_repo: tuple[Path, Path, Path], start_cloud: Callable[..., Any]
) -> None:
    root, _, public = signed_repo
    manifest = root / MODEL / "2" / "manifest.json"
    tampered = json.loads(manifest.read_text())
    tampered["plan"]["predicted"]["total_ms"] = 0.001  # a better-looking cut, same files
    manifest.write_text(json.dumps(tampered))
    cloud = start_cloud(repository=root, trust_key=load_trust_key(public))
    cuts = _cuts(cloud)[MODEL]
    assert cuts["1"] == (cpb.CUT_STATE_READY, "")
    state, reason = cuts["2"]
    assert state == cpb.CUT_STATE_FAILED and "signature does not match" in reason
    assert str(root / MODEL / "2") in reason


def test_a_trusting_node_accepts_only_signed_uploads(
    repo: Any, signed_repo: tuple[Path, Path, Path], tmp_path: Path, start_cloud: Callable[..., Any]
) -> None:
    root, _, public = signed_repo
    cloud = start_cloud(repository=root, admin_tokens=(ADMIN,), trust_key=load_trust_key(public))
    unsigned = repo.root / MODEL / "1"
    with pytest.raises(grpc.RpcError) as info:
        control(cloud, ADMIN).DeploySplit(_upload(unsigned, "copy"), timeout=120)
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "not signed" in info.value.details()
    assert not (root / "copy").exists()
    reply = control(cloud, ADMIN).DeploySplit(_upload(root / MODEL / "1", "copy"), timeout=120)
    assert reply.cut.state == cpb.CUT_STATE_READY
    # Signed by someone else: refused too.
    other, _ = generate_key_pair(tmp_path / "other.pem")
    foreign = tmp_path / "foreign"
    shutil.copytree(unsigned, foreign)
    manifest = json.loads((foreign / "manifest.json").read_text())
    (foreign / "manifest.json").write_text(json.dumps(load_signing_key(other).sign(manifest)))
    with pytest.raises(grpc.RpcError) as info:
        control(cloud, ADMIN).DeploySplit(_upload(foreign, "copy"), timeout=120)
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "signed by key" in info.value.details()


def test_cloud_serve_refuses_contradicting_deploy_flags(
    repo: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tokens = tmp_path / "admin.txt"
    tokens.write_text(f"{ADMIN}\n")
    tokens.chmod(0o600)
    code = main(["cloud", "serve", "--repository", str(repo.root), "--port", "0",
                 "--admin-token-file", str(tokens), "--no-deploy"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and "--no-deploy refuses the uploads --admin-token-file allows" in err
