"""OIP over HTTP/REST (cloud_node.rest): the gRPC core's answers, auth, TLS and limits.

Nodes bind 127.0.0.1:0 for gRPC and HTTP. curl and tritonclient.http run as subprocesses
(tritonclient next to ``protos.inference`` is unsafe: both may register ``inference``), and
one test starts ``edgecut cloud serve --http-port 0`` itself.
"""

from __future__ import annotations

import http.client
import importlib.util
import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from protos import serde, transport
from protos.inference import grpc_service_pb2 as pb
from protos.inference import grpc_service_pb2_grpc as pb_grpc

MODEL = "digits_cnn"
VERSION = "1"  # crosses after pool2: one FP32 input (B, 128, 2, 2), one output fc2 (B, 10)


def crossing_input(repo: Any, n: int, seed: int = 0) -> tuple[str, np.ndarray]:
    x = np.random.default_rng(seed).standard_normal((n, 1, 8, 8), dtype=np.float32)
    art = repo.artifact(VERSION)
    (mid,) = (t.numpy() for t in art.run_head(torch.from_numpy(x)))
    return art.crossing[0].name, mid


def call(
    url: str,
    body: bytes | Iterable[bytes] | None = None,
    headers: dict[str, str] | None = None,
    context: ssl.SSLContext | None = None,
) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, data=body, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=60, context=context) as reply:
            return reply.status, lower(reply.headers.items()), reply.read()
    except urllib.error.HTTPError as exc:
        return exc.code, lower(exc.headers.items()), exc.read()


def send_unread(url: str, headers: dict[str, str], body: list[bytes]) -> tuple[int, bytes]:
    """POST ``body`` (already framed) to a server that may refuse it before reading it all.

    A server that answers early closes the connection under the rest of the body, so a
    write may fail with EPIPE or ECONNRESET; the answer is then read from what arrived.
    """
    parts = urllib.parse.urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    try:
        connection.putrequest("POST", parts.path)
        for key, value in {"Content-Type": "application/json", **headers}.items():
            connection.putheader(key, value)
        connection.endheaders()
        try:
            for piece in body:
                connection.send(piece)
        except (BrokenPipeError, ConnectionResetError):
            pass
        reply = connection.getresponse()
        return reply.status, reply.read()
    finally:
        connection.close()


def lower(headers: Iterable[tuple[str, str]]) -> dict[str, str]:
    return {k.lower(): v for k, v in headers}


def json_body(name: str, x: np.ndarray, **extra: Any) -> bytes:
    tensor = {"name": name, "datatype": "FP32", "shape": list(x.shape), "data": x.ravel().tolist()}
    return json.dumps({"id": "r1", "inputs": [tensor], **extra}).encode()


def binary_body(name: str, x: np.ndarray, *, binary_outputs: bool) -> tuple[bytes, dict[str, str]]:
    raw = x.astype("<f4").tobytes()
    document: dict[str, Any] = {
        "id": "r1",
        "inputs": [
            {
                "name": name,
                "datatype": "FP32",
                "shape": list(x.shape),
                "parameters": {"binary_data_size": len(raw)},
            }
        ],
    }
    if binary_outputs:
        document["parameters"] = {"binary_data_output": True}
    header = json.dumps(document).encode()
    return header + raw, {"Inference-Header-Content-Length": str(len(header))}


def rest_outputs(headers: dict[str, str], content: bytes) -> tuple[dict[str, Any], np.ndarray]:
    """(the JSON part, fc2) of an infer reply, binary or JSON."""
    length = headers.get("inference-header-content-length")
    header = content if length is None else content[: int(length)]
    document = json.loads(header)
    (out,) = document["outputs"]
    if "data" in out:
        return document, np.asarray(out["data"], dtype=np.float32).reshape(out["shape"])
    raw = content[int(length) : int(length) + out["parameters"]["binary_data_size"]]  # type: ignore[arg-type]
    return document, np.frombuffer(raw, dtype="<f4").reshape(out["shape"])


def error_of(content: bytes) -> str:
    document = json.loads(content)
    assert list(document) == ["error"] and "\n" not in document["error"]
    return str(document["error"])


@pytest.fixture(scope="module")
def rest_cloud(repo: Any) -> Any:
    from cloud_node.server import CloudConfig, CloudNode

    node = CloudNode(
        CloudConfig(
            repository=repo.root, port=0, http_port=0, threads=1, max_request_bytes=64 * 1024
        )
    )
    node.start()
    try:
        yield node
    finally:
        node.stop(grace_s=0)


def base(node: Any, scheme: str = "http") -> str:
    return f"{scheme}://127.0.0.1:{node.http_port}"


def test_health_and_metadata_match_grpc(rest_cloud: Any) -> None:
    url = base(rest_cloud)
    assert call(f"{url}/v2/health/live")[0] == 200
    status, _, content = call(f"{url}/v2/health/ready")
    assert status == 200 and json.loads(content) == {"ready": True}
    assert call(f"{url}/v2/models/{MODEL}/ready")[0] == 200
    assert call(f"{url}/v2/models/{MODEL}/versions/2/ready")[0] == 200
    assert call(f"{url}/v2/models/{MODEL}/versions/9/ready")[0] == 503
    status, _, content = call(f"{url}/v2/models/{MODEL}/versions/{VERSION}")
    assert status == 200
    meta = json.loads(content)
    stub = pb_stub(rest_cloud)
    want = stub.ModelMetadata(pb.ModelMetadataRequest(name=MODEL, version=VERSION))
    assert meta["name"] == want.name and meta["versions"] == list(want.versions)
    assert meta["platform"] == want.platform
    assert [(t["name"], t["datatype"], t["shape"]) for t in meta["inputs"]] == [
        (t.name, t.datatype, list(t.shape)) for t in want.inputs
    ]
    assert [(t["name"], t["datatype"], t["shape"]) for t in meta["outputs"]] == [
        (t.name, t.datatype, list(t.shape)) for t in want.outputs
    ]
    status, _, content = call(f"{url}/v2/models/nope")
    assert status == 404 and "unknown model 'nope'" in error_of(content)
    assert call(f"{url}/v2/no/such/path")[0] == 404


def pb_stub(node: Any, token: str | None = None) -> Any:
    channel = transport.build_channel(f"127.0.0.1:{node.port}", token=token)
    return pb_grpc.GRPCInferenceServiceStub(channel)


@pytest.mark.parametrize("form", ["json", "binary-in", "binary-in-out"])
def test_infer_gives_the_grpc_answer(repo: Any, rest_cloud: Any, form: str) -> None:
    name, x = crossing_input(repo, 3)
    grpc_reply = serde.response_from_proto(
        pb_stub(rest_cloud).ModelInfer(
            serde.request_to_proto(serde.InferRequest(MODEL, {name: x}, model_version=VERSION)),
            timeout=60,
        )
    )
    url = f"{base(rest_cloud)}/v2/models/{MODEL}/versions/{VERSION}/infer"
    if form == "json":
        body, headers = json_body(name, x), {"Content-Type": "application/json"}
    else:
        body, headers = binary_body(name, x, binary_outputs=form == "binary-in-out")
    status, reply_headers, content = call(url, body, headers)
    assert status == 200, content
    document, got = rest_outputs(reply_headers, content)
    assert document["model_name"] == MODEL and document["model_version"] == VERSION
    assert document["id"] == "r1" and document["parameters"]["edgecut.batch_frames"] >= 3
    binary = "parameters" in document["outputs"][0]
    assert binary == (form == "binary-in-out")
    # The same core ran the same tail on the same bytes: the same floats, bit for bit.
    np.testing.assert_array_equal(got, grpc_reply.outputs["fc2"])


def test_rest_requests_count_in_the_grpc_series(repo: Any, rest_cloud: Any) -> None:
    registry = rest_cloud.metrics.registry

    def count(code: str) -> float:
        labels = {"model": MODEL, "version": VERSION, "code": code}
        return registry.get_sample_value("edgecut_requests_total", labels) or 0.0

    ok, invalid = count("OK"), count("INVALID_ARGUMENT")
    name, x = crossing_input(repo, 1)
    url = f"{base(rest_cloud)}/v2/models/{MODEL}/versions/{VERSION}/infer"
    assert call(url, json_body(name, x))[0] == 200
    assert call(url, json_body(name, x[:, :64]))[0] == 400
    assert (count("OK"), count("INVALID_ARGUMENT")) == (ok + 1, invalid + 1)


def test_requests_the_core_refuses_map_to_http_statuses(repo: Any, rest_cloud: Any) -> None:
    name, x = crossing_input(repo, 1)
    url = f"{base(rest_cloud)}/v2/models/{MODEL}/versions/{VERSION}/infer"
    # The manifest check is the gRPC path's: a wrong shape is refused naming what it expects.
    status, _, content = call(url, json_body(name, x[:, :64]))
    assert status == 400 and "128" in error_of(content)
    status, _, content = call(url, json_body("nope", x))
    assert status == 400 and f"missing input {name!r}" in error_of(content)
    status, _, content = call(url, b"{not json")
    assert status == 400 and "not valid JSON" in error_of(content)
    body, headers = binary_body(name, x, binary_outputs=False)
    status, _, content = call(url, body[:-4], headers)  # the binary part is short
    assert status == 400 and "binary_data_size" in error_of(content)
    status, _, content = call(f"{base(rest_cloud)}/v2/models/nope/infer", json_body(name, x))
    assert status == 404 and "unknown model" in error_of(content)


def test_a_body_above_the_limit_is_refused_before_it_is_read(repo: Any, rest_cloud: Any) -> None:
    limit = 64 * 1024  # rest_cloud's max_request_bytes
    name, x = crossing_input(repo, 1)
    url = f"{base(rest_cloud)}/v2/models/{MODEL}/versions/{VERSION}/infer"
    big = json_body(name, np.zeros((40, 128, 2, 2), np.float32))
    assert len(big) > limit
    # Refused on its Content-Length: no byte of the body needs to be sent at all.
    status, content = send_unread(url, {"Content-Length": str(len(big))}, [])
    assert status == 413 and f"limit of {limit} bytes" in error_of(content)
    assert "max_request_bytes" in error_of(content)
    # Chunked, with no Content-Length: refused once the bytes read pass the limit.
    frames = [
        b"%x\r\n%s\r\n" % (len(c), c) for c in (big[i : i + 8192] for i in range(0, len(big), 8192))
    ]
    status, content = send_unread(url, {"Transfer-Encoding": "chunked"}, [*frames, b"0\r\n\r\n"])
    assert status == 413 and f"limit of {limit} bytes" in error_of(content)
    # The node still answers.
    assert call(url, json_body(name, x))[0] == 200


def test_tokens_are_required_except_for_health(repo: Any, start_cloud: Any) -> None:
    running = start_cloud(http_port=0, tokens=("s3cret", "next"))
    url = base(running.node)
    name, x = crossing_input(repo, 1)
    infer = f"{url}/v2/models/{MODEL}/infer"
    assert call(f"{url}/v2/health/live")[0] == 200
    assert call(f"{url}/v2/health/ready")[0] == 200
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic s3cret"}):
        status, reply_headers, content = call(infer, json_body(name, x), headers)
        assert status == 401 and error_of(content), headers
        assert reply_headers["www-authenticate"] == "Bearer"
    assert call(f"{url}/v2/models/{MODEL}")[0] == 401
    for token in ("s3cret", "next"):
        auth = {"Authorization": f"Bearer {token}"}
        assert call(infer, json_body(name, x), auth)[0] == 200
        assert call(f"{url}/v2/models/{MODEL}", headers=auth)[0] == 200


def test_tls_serves_https_with_the_node_certificate(
    repo: Any, start_cloud: Any, certs: Any
) -> None:
    tls = transport.ServerTLS(certs.server_cert, certs.server_key)
    running = start_cloud(http_port=0, tls=tls)
    name, x = crossing_input(repo, 2)
    trusted = ssl.create_default_context(cafile=str(certs.ca))
    url = f"{base(running.node, 'https')}/v2/models/{MODEL}/versions/{VERSION}/infer"
    status, headers, content = call(url, json_body(name, x), context=trusted)
    assert status == 200
    np.testing.assert_allclose(
        rest_outputs(headers, content)[1], repo.reference(crossing_frames(2)), rtol=1e-4, atol=1e-4
    )
    untrusted = ssl.create_default_context(cafile=str(certs.rogue_ca))
    with pytest.raises(urllib.error.URLError):
        call(url, json_body(name, x), context=untrusted)
    with pytest.raises((urllib.error.URLError, ConnectionError)):
        call(f"{base(running.node)}/v2/health/live")  # plain HTTP to a TLS port


def crossing_frames(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, 1, 8, 8), dtype=np.float32)


def test_curl_against_cloud_serve_with_http_port(repo: Any, tmp_path: Path) -> None:
    if shutil.which("curl") is None:
        pytest.skip("the curl command is not installed")
    token = tmp_path / "token"
    token.write_text("s3cret\n")
    token.chmod(0o600)
    port_file, http_port_file = tmp_path / "port", tmp_path / "http-port"
    log = (tmp_path / "serve.log").open("w")
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "edgecut.cli", "cloud", "serve",
            "--repository", str(repo.root), "--port", "0", "--threads", "1",
            "--http-port", "0", "--http-port-file", str(http_port_file),
            "--port-file", str(port_file), "--token-file", str(token),
        ],
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 300  # torch import and loading, on a busy machine
        while not port_file.exists():
            assert proc.poll() is None, (tmp_path / "serve.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "cloud serve did not start"
            time.sleep(0.1)
        url = f"http://127.0.0.1:{int(http_port_file.read_text())}"

        def curl(*args: str) -> tuple[int, bytes]:
            out = subprocess.run(
                ["curl", "-sS", "--max-time", "60", "-o", "-", "-w", "\n%{http_code}", *args],
                capture_output=True,
                timeout=90,
                check=True,
            ).stdout
            body, _, code = out.rpartition(b"\n")
            return int(code), body

        auth = "Authorization: Bearer s3cret"
        assert curl(f"{url}/v2/health/ready") == (200, b'{"ready":true}')
        code, body = curl("-H", auth, f"{url}/v2/models/{MODEL}/versions/{VERSION}")
        assert code == 200 and json.loads(body)["inputs"][0]["shape"] == [-1, 128, 2, 2]
        name, x = crossing_input(repo, 2)
        (tmp_path / "req.json").write_bytes(json_body(name, x))
        infer = f"{url}/v2/models/{MODEL}/versions/{VERSION}/infer"
        args = [
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            f"@{tmp_path / 'req.json'}",
        ]
        code, body = curl(*args, infer)
        assert code == 401 and error_of(body)
        code, body = curl("-H", auth, *args, infer)
        assert code == 200
        _, got = rest_outputs({}, body)
        np.testing.assert_allclose(got, repo.reference(crossing_frames(2)), rtol=1e-4, atol=1e-4)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


_TRITON_HTTP_PEER = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import tritonclient.http as th

    config = json.loads(open(sys.argv[1]).read())
    headers = {"Authorization": "Bearer " + config["token"]}
    client = th.InferenceServerClient(config["url"])
    seen = {
        "live": client.is_server_live(),
        "ready": client.is_server_ready(),
        "model_ready": client.is_model_ready(config["model"], config["version"], headers=headers),
        "metadata": client.get_model_metadata(config["model"], config["version"], headers=headers),
    }
    x = np.load(config["input"])
    for binary in (True, False):
        tensor = th.InferInput(config["name"], list(x.shape), "FP32")
        tensor.set_data_from_numpy(x, binary_data=binary)
        wanted = th.InferRequestedOutput("fc2", binary_data=binary)
        result = client.infer(
            config["model"], [tensor], model_version=config["version"], outputs=[wanted],
            # A fresh dict: tritonclient writes Inference-Header-Content-Length into it.
            request_id="t1", headers=dict(headers),
        )
        np.save(config["out"] + ("-binary" if binary else "-json") + ".npy", result.as_numpy("fc2"))
        seen["id"] = result.get_response()["id"]
    try:
        client.infer("nope", [tensor], headers=dict(headers))
    except th.InferenceServerException as exc:
        seen["unknown_model"] = [exc.status(), exc.message()]
    print(json.dumps(seen))
    """
)


def test_tritonclient_http_reaches_the_node(repo: Any, start_cloud: Any, tmp_path: Path) -> None:
    if importlib.util.find_spec("tritonclient") is None or (
        importlib.util.find_spec("geventhttpclient") is None
    ):
        pytest.skip("tritonclient[http] is a test dependency")
    running = start_cloud(http_port=0, tokens=("s3cret",))
    name, x = crossing_input(repo, 2)
    np.save(tmp_path / "x.npy", x)
    peer = tmp_path / "peer.py"
    peer.write_text(_TRITON_HTTP_PEER)
    config = tmp_path / "config.json"
    config.write_text(
        json.dumps(
            {
                "url": f"127.0.0.1:{running.node.http_port}",
                "model": MODEL,
                "version": VERSION,
                "name": name,
                "token": "s3cret",
                "input": str(tmp_path / "x.npy"),
                "out": str(tmp_path / "out"),
            }
        )
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run(
        [sys.executable, str(peer), str(config)],
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    seen = json.loads(proc.stdout.strip().splitlines()[-1])
    assert seen["live"] and seen["ready"] and seen["model_ready"]
    assert seen["metadata"]["name"] == MODEL and seen["metadata"]["versions"] == ["1", "2"]
    assert seen["metadata"]["inputs"][0]["name"] == name
    assert seen["id"] == "t1"
    assert "unknown model" in seen["unknown_model"][1]
    grpc_reply = serde.response_from_proto(
        pb_stub(running.node, token="s3cret").ModelInfer(
            serde.request_to_proto(serde.InferRequest(MODEL, {name: x}, model_version=VERSION)),
            timeout=60,
        )
    )
    for form in ("binary", "json"):
        got = np.load(tmp_path / f"out-{form}.npy")
        np.testing.assert_array_equal(got, grpc_reply.outputs["fc2"])
