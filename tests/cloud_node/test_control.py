"""edgecut.v1.EdgecutService: ListCuts, GetManifest, and DeploySplit's verified uploads."""

from __future__ import annotations

import hashlib
import json
import math
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
import torch

from protos import serde, transport
from protos.edgecut.v1 import edgecut_pb2 as cpb
from protos.edgecut.v1 import edgecut_pb2_grpc as cpb_grpc

MODEL = "digits_cnn"
ADMIN = "admin-token-0123"  # DeploySplit's credential in these tests
INFERENCE = "inference-token-4567"


def control(cloud: Any, token: str | None = None) -> Any:
    return cpb_grpc.EdgecutServiceStub(transport.build_channel(cloud.target, token=token))


def rpc_error(call: Callable[[], Any]) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        call()
    return info.value


def test_list_cuts_describes_versions_and_the_table(
    repo: Any, start_cloud: Callable[..., Any]
) -> None:
    stub = control(start_cloud())
    (model,) = stub.ListCuts(
        cpb.ListCutsRequest(model_name=MODEL, include_breakpoints=True), timeout=30
    ).models
    assert model.name == MODEL and model.default_version == "1"
    assert [(t.name, list(t.shape)) for t in model.inputs] == [("x", [-1, 1, 8, 8])]
    assert [c.version for c in model.cuts] == ["1", "2"]
    one, two = model.cuts
    assert one.state == cpb.CUT_STATE_READY
    assert [(t.name, t.datatype, list(t.shape), t.size_bytes) for t in one.crossing] == [
        ("pool2", "FP32", [-1, 128, 2, 2], 2048)
    ]
    assert [t.name for t in two.crossing] == ["relu1"] and one.codec.name == "none"
    manifest = json.loads((repo.root / MODEL / "1" / "manifest.json").read_text())
    assert one.head_sha256 == manifest["files"]["head.pt2"]["sha256"]
    assert one.plan.edge_nodes[-1] == "pool2" and one.plan.predicted.total_ms > 0
    bands = [(b.min_mbps, b.max_mbps, b.version) for b in model.breakpoints]
    assert bands == [(0.0, 1.0, ""), (1.0, 10.0, "1"), (10.0, math.inf, "2")]
    error = rpc_error(lambda: stub.ListCuts(cpb.ListCutsRequest(model_name="x"), timeout=30))
    assert error.code() == grpc.StatusCode.NOT_FOUND


def test_get_manifest_is_verbatim(repo: Any, start_cloud: Callable[..., Any]) -> None:
    stub = control(start_cloud())
    reply = stub.GetManifest(cpb.GetManifestRequest(model_name=MODEL), timeout=30)
    text = (repo.root / MODEL / "1" / "manifest.json").read_text()
    assert reply.version == "1" and reply.manifest_json == text
    assert reply.manifest_sha256 == hashlib.sha256(text.encode()).hexdigest()
    error = rpc_error(
        lambda: stub.GetManifest(cpb.GetManifestRequest(model_name=MODEL, version="5"))
    )
    assert error.code() == grpc.StatusCode.NOT_FOUND


def _upload(
    artifact: Path,
    model: str,
    version: str = "",
    *,
    tamper: bool = False,
    chunk_bytes: int = 64 * 1024,
) -> Iterator[cpb.DeploySplitRequest]:
    manifest = json.loads((artifact / "manifest.json").read_text())
    files = [
        cpb.FileEntry(path=name, size_bytes=meta["bytes"], sha256=meta["sha256"])
        for name, meta in manifest["files"].items()
    ]
    yield cpb.DeploySplitRequest(
        header=cpb.DeployHeader(
            model_name=model,
            version=version,
            manifest_json=json.dumps(manifest),
            files=files,
            set_default=False,
        )
    )
    for entry in files:
        data = bytearray((artifact / entry.path).read_bytes())
        if tamper and entry.path == "tail.pt2":
            data[len(data) // 2] ^= 0xFF
        for offset in range(0, len(data), chunk_bytes):
            yield cpb.DeploySplitRequest(
                chunk=cpb.FileChunk(
                    path=entry.path, offset=offset, data=bytes(data[offset : offset + chunk_bytes])
                )
            )


@pytest.fixture
def writable_repo(repo: Any, tmp_path: Path) -> Path:
    copy = tmp_path / "repository"
    shutil.copytree(repo.root, copy)
    return copy


def test_deploy_split_adds_a_served_version(
    repo: Any, writable_repo: Path, start_cloud: Callable[..., Any]
) -> None:
    cloud = start_cloud(repository=writable_repo, admin_tokens=(ADMIN,))
    stub = control(cloud, ADMIN)
    source = repo.root / MODEL / "2"
    reply = stub.DeploySplit(_upload(source, "digits_copy"), timeout=120)
    assert (reply.model_name, reply.version) == ("digits_copy", "1")
    assert reply.cut.state == cpb.CUT_STATE_READY and reply.received_bytes > 0
    assert (writable_repo / "digits_copy" / "1" / "tail.pt2").is_file()
    assert not any((writable_repo / ".staging").iterdir())
    # It answers like the original cut.
    x = np.random.default_rng(3).standard_normal((2, 1, 8, 8), dtype=np.float32)
    art = repo.artifact("2")
    (mid,) = (t.numpy() for t in art.run_head(torch.from_numpy(x)))
    msg = serde.request_to_proto(serde.InferRequest("digits_copy", {"relu1": mid}))
    got = serde.response_from_proto(cloud.stub().ModelInfer(msg, timeout=60)).outputs["fc2"]
    np.testing.assert_allclose(got, repo.reference(x), rtol=1e-4, atol=1e-5)
    # A second upload gets the next version; the same version again needs replace.
    assert stub.DeploySplit(_upload(source, "digits_copy"), timeout=120).version == "2"
    error = rpc_error(lambda: stub.DeploySplit(_upload(source, "digits_copy", "1"), timeout=120))
    assert error.code() == grpc.StatusCode.ALREADY_EXISTS


@pytest.mark.parametrize(
    "requests,code,message",
    [
        ("tampered", "DATA_LOSS", "sha256 of the received bytes"),
        ("truncated", "DATA_LOSS", "the stream ended with"),
        ("no_header", "INVALID_ARGUMENT", "expected a DeployHeader first"),
        ("bad_path", "INVALID_ARGUMENT", "is not allowed"),
        ("bad_name", "INVALID_ARGUMENT", "model name '../up' is not valid"),
    ],
)
def test_broken_uploads_are_refused_and_leave_nothing(
    repo: Any,
    writable_repo: Path,
    start_cloud: Callable[..., Any],
    requests: str,
    code: str,
    message: str,
) -> None:
    stub = control(start_cloud(repository=writable_repo, admin_tokens=(ADMIN,)), ADMIN)
    source = repo.root / MODEL / "1"
    good = list(_upload(source, "broken"))
    stream = {
        "tampered": lambda: _upload(source, "broken", tamper=True),
        "truncated": lambda: iter(good[:-1]),
        "no_header": lambda: iter(good[1:]),
        "bad_path": lambda: iter(
            [
                cpb.DeploySplitRequest(
                    header=cpb.DeployHeader(
                        model_name="broken",
                        manifest_json="{}",
                        files=[cpb.FileEntry(path="../evil", size_bytes=1, sha256="0" * 64)],
                    )
                )
            ]
        ),
        "bad_name": lambda: _upload(source, "../up"),
    }[requests]()
    error = rpc_error(lambda: stub.DeploySplit(stream, timeout=120))
    assert error.code() == grpc.StatusCode[code] and message in error.details()
    assert not (writable_repo / "broken").exists()
    staging = writable_repo / ".staging"
    assert not staging.exists() or not any(staging.iterdir())


def test_deploys_are_off_without_an_admin_token(repo: Any, start_cloud: Callable[..., Any]) -> None:
    stub = control(start_cloud())
    error = rpc_error(lambda: stub.DeploySplit(_upload(repo.root / MODEL / "1", "x"), timeout=60))
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "--admin-token-file" in error.details()


def test_only_the_admin_token_may_deploy(
    repo: Any, writable_repo: Path, start_cloud: Callable[..., Any]
) -> None:
    cloud = start_cloud(repository=writable_repo, tokens=(INFERENCE,), admin_tokens=(ADMIN,))
    source = repo.root / MODEL / "1"
    for token, code in (
        (INFERENCE, grpc.StatusCode.PERMISSION_DENIED),  # a valid inference token
        ("guess", grpc.StatusCode.PERMISSION_DENIED),
        (None, grpc.StatusCode.UNAUTHENTICATED),
    ):
        stub = control(cloud, token)
        error = rpc_error(lambda stub=stub: stub.DeploySplit(_upload(source, "x"), timeout=60))
        assert error.code() == code, (token, error.details())
    assert not (writable_repo / "x").exists()
    # The inference token still lists cuts; the admin token deploys.
    assert control(cloud, INFERENCE).ListCuts(cpb.ListCutsRequest(), timeout=30).models
    reply = control(cloud, ADMIN).DeploySplit(_upload(source, "x"), timeout=120)
    assert reply.cut.state == cpb.CUT_STATE_READY


def test_an_admin_token_cannot_also_be_an_inference_token(repo: Any) -> None:
    from cloud_node.server import CloudConfig
    from partitioner.errors import EdgecutError

    with pytest.raises(EdgecutError, match="an admin token is also an inference token"):
        CloudConfig(repository=repo.root, tokens=(ADMIN,), admin_tokens=(ADMIN,))
