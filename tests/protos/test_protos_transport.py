"""protos.transport: message limits, bearer-token auth, TLS and mutual TLS, port binding."""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from protos import serde, transport
from protos.inference import grpc_service_pb2 as pb
from protos.inference import grpc_service_pb2_grpc as pb_grpc

TIMEOUT_S = 20  # generous: a busy 2-core machine must not turn a pass into a flake

StartServer = Callable[..., Any]


def live(channel: grpc.Channel, **kwargs: Any) -> bool:
    stub = pb_grpc.GRPCInferenceServiceStub(channel)
    return stub.ServerLive(pb.ServerLiveRequest(), timeout=TIMEOUT_S, **kwargs).live


def status_of(call: Callable[[], Any]) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as err:
        call()
    return err.value.code()


# ------------------------------------------------------------------ limits


def big_request(n_bytes: int) -> pb.ModelInferRequest:
    array = np.arange(n_bytes // 4, dtype=np.float32)
    return serde.request_to_proto(serde.InferRequest("echo", {"x": array}))


def test_messages_above_4_mib_pass_both_ways(start_server: StartServer) -> None:
    server = start_server()
    request = big_request(5 * 2**20)  # 5 MiB up, and 5 MiB echoed back down
    assert request.ByteSize() > 4 * 2**20
    with transport.build_channel(server.target) as channel:
        reply = pb_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request, timeout=60)
    out = serde.response_from_proto(reply).outputs["x_echo"]
    assert out.shape == (5 * 2**20 // 4,) and out[-1] == out.size - 1


def test_grpc_defaults_would_refuse_it(start_server: StartServer) -> None:
    server = start_server()
    with grpc.insecure_channel(server.target) as plain:  # gRPC's 4 MiB receive default
        stub = pb_grpc.GRPCInferenceServiceStub(plain)
        code = status_of(lambda: stub.ModelInfer(big_request(5 * 2**20), timeout=60))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_server_limit_is_enforced(start_server: StartServer) -> None:
    server = start_server(max_message_bytes=2**20)
    with transport.build_channel(server.target) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        code = status_of(lambda: stub.ModelInfer(big_request(2 * 2**20), timeout=60))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_serde_errors_map_to_status_codes(start_server: StartServer) -> None:
    server = start_server(max_bytes=1000)
    with transport.build_channel(server.target) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        bad = big_request(400)
        bad.raw_input_contents[0] = bytes(399)
        with pytest.raises(grpc.RpcError) as err:
            stub.ModelInfer(bad, timeout=TIMEOUT_S)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "needs 400 bytes, got 399" in err.value.details()
        code = status_of(lambda: stub.ModelInfer(big_request(4000), timeout=TIMEOUT_S))
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_options_and_validation() -> None:
    options = dict(transport.channel_options(max_message_bytes=123))
    assert options["grpc.max_send_message_length"] == 123
    assert options["grpc.max_receive_message_length"] == 123
    assert options["grpc.keepalive_time_ms"] == transport.DEFAULT_KEEPALIVE.time_ms
    server_options = dict(transport.server_options())
    assert server_options["grpc.max_receive_message_length"] == transport.DEFAULT_MAX_MESSAGE_BYTES
    assert server_options["grpc.so_reuseport"] == 0
    with pytest.raises(ValueError, match=r"max_message_bytes must be in 1\.\."):
        transport.build_channel("127.0.0.1:1", max_message_bytes=0)
    with pytest.raises(ValueError, match=r"min_recv_ping_interval_ms \(60000\) must be <= time_ms"):
        transport.Keepalive(time_ms=30_000, min_recv_ping_interval_ms=60_000)
    with pytest.raises(ValueError, match="max_workers must be >= 1"):
        transport.build_server(max_workers=0)


def test_port_zero_is_read_back_and_a_busy_port_fails(start_server: StartServer) -> None:
    server = start_server()
    assert server.port > 0
    with transport.build_channel(server.target) as channel:
        assert live(channel)
    other = transport.build_server(max_workers=1)
    with pytest.raises(OSError, match=f"could not bind gRPC server to 127.0.0.1:{server.port}"):
        transport.add_port(other, server.target)
    other.stop(grace=None)


# ------------------------------------------------------------------- token


def test_token_auth(start_server: StartServer) -> None:
    server = start_server(token=["old-secret", "new-secret"])  # two valid during rotation
    with transport.build_channel(server.target) as anonymous:
        assert status_of(lambda: live(anonymous)) == grpc.StatusCode.UNAUTHENTICATED
        assert (
            status_of(lambda: live(anonymous, metadata=[("authorization", "Basic new-secret")]))
            == grpc.StatusCode.UNAUTHENTICATED
        )
        # Health checks are public by design, so probes need no token.
        health = health_pb2_grpc.HealthStub(anonymous)
        reply = health.Check(health_pb2.HealthCheckRequest(), timeout=TIMEOUT_S)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
    with transport.build_channel(server.target, token="wrong") as wrong:
        with pytest.raises(grpc.RpcError) as err:
            live(wrong)
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert err.value.details() == "invalid bearer token"
    for token in ("old-secret", "new-secret"):
        with transport.build_channel(server.target, token=token) as right:
            assert live(right)


def test_token_auth_covers_streaming_methods(start_server: StartServer) -> None:
    server = start_server(token="s3cret")

    def stream(channel: grpc.Channel) -> list[Any]:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        return list(stub.ModelStreamInfer(iter([pb.ModelInferRequest()]), timeout=TIMEOUT_S))

    with transport.build_channel(server.target) as anonymous:
        assert status_of(lambda: stream(anonymous)) == grpc.StatusCode.UNAUTHENTICATED
    with transport.build_channel(server.target, token="s3cret") as right:
        # Past auth, the echo servicer does not implement streaming.
        assert status_of(lambda: stream(right)) == grpc.StatusCode.UNIMPLEMENTED


def test_bad_tokens_are_refused_at_construction() -> None:
    for bad in ("", "two words", " padded"):
        with pytest.raises(ValueError, match="bearer tokens must be non-empty"):
            transport.BearerTokenAuth(bad)
        with pytest.raises(ValueError, match="bearer tokens must be non-empty"):
            transport.build_channel("127.0.0.1:1", token=bad)


# --------------------------------------------------------------------- TLS


def test_tls(start_server: StartServer, certs: Any) -> None:
    server = start_server(tls=transport.ServerTLS(certs.server_cert, certs.server_key))
    trusted = transport.ClientTLS(root_ca_file=certs.ca, server_name_override="edgecut.test")
    with transport.build_channel(server.target, tls=trusted) as channel:
        assert live(channel)
    untrusted = transport.ClientTLS(
        root_ca_file=certs.rogue_ca, server_name_override="edgecut.test"
    )
    with transport.build_channel(server.target, tls=untrusted) as channel:
        assert status_of(lambda: live(channel)) == grpc.StatusCode.UNAVAILABLE
    wrong_name = transport.ClientTLS(root_ca_file=certs.ca, server_name_override="other.test")
    with transport.build_channel(server.target, tls=wrong_name) as channel:
        assert status_of(lambda: live(channel)) == grpc.StatusCode.UNAVAILABLE
    with transport.build_channel(server.target) as plaintext:
        assert status_of(lambda: live(plaintext)) == grpc.StatusCode.UNAVAILABLE


def test_mutual_tls_with_token(start_server: StartServer, certs: Any) -> None:
    server_tls = transport.ServerTLS(certs.server_cert, certs.server_key, client_ca_file=certs.ca)
    server = start_server(tls=server_tls, token="s3cret")
    good = transport.ClientTLS(certs.ca, certs.client_cert, certs.client_key, "edgecut.test")
    with transport.build_channel(server.target, tls=good, token="s3cret") as channel:
        assert live(channel)
    with transport.build_channel(server.target, tls=good) as no_token:
        assert status_of(lambda: live(no_token)) == grpc.StatusCode.UNAUTHENTICATED
    no_cert = transport.ClientTLS(certs.ca, server_name_override="edgecut.test")
    rogue_cert = transport.ClientTLS(
        certs.ca, certs.rogue_client_cert, certs.rogue_client_key, "edgecut.test"
    )
    for tls in (no_cert, rogue_cert):
        with transport.build_channel(server.target, tls=tls, token="s3cret") as channel:
            with pytest.raises(grpc.RpcError) as err:
                live(channel)
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE


def test_tls_configs_name_the_bad_file(certs: Any, tmp_path: Path) -> None:
    missing = tmp_path / "nope.pem"
    with pytest.raises(FileNotFoundError, match=f"ServerTLS.key_file: {missing} does not exist"):
        transport.ServerTLS(certs.server_cert, missing)
    with pytest.raises(
        ValueError, match=r"ServerTLS.cert_file: .*server.key does not hold PEM cert"
    ):
        transport.ServerTLS(certs.server_key, certs.server_key)  # key given as certificate
    with pytest.raises(ValueError, match=r"ClientTLS.key_file: .*client.pem does not hold a PEM"):
        transport.ClientTLS(certs.ca, certs.client_cert, certs.client_cert)
    with pytest.raises(ValueError, match="is not a regular file"):
        transport.ClientTLS(root_ca_file=tmp_path)
    with pytest.raises(ValueError, match="cert_file and key_file go together"):
        transport.ClientTLS(certs.ca, cert_file=certs.client_cert)
    config = transport.ServerTLS(str(certs.server_cert), str(certs.server_key))  # type: ignore[arg-type]
    assert isinstance(config.cert_file, Path)


def test_a_key_that_is_not_the_certificates_is_refused_before_binding(
    certs: Any, tmp_path: Path
) -> None:
    # gRPC itself would only say "Failed to bind" (server) or fail every handshake (client).
    with pytest.raises(
        ValueError,
        match=f"ServerTLS.key_file {certs.client_key} does not match ServerTLS.cert_file "
        f"{certs.server_cert}: the key is not the certificate's",
    ):
        transport.ServerTLS(certs.server_cert, certs.client_key)
    with pytest.raises(
        ValueError, match="ClientTLS.key_file .* does not match ClientTLS.cert_file"
    ):
        transport.ClientTLS(certs.ca, certs.client_cert, certs.server_key)
    encrypted = tmp_path / "encrypted.key"
    subprocess.run(
        ["openssl", "pkey", "-in", str(certs.server_key), "-aes256", "-passout", "pass:x",
         "-out", str(encrypted)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    with pytest.raises(ValueError, match=f"ServerTLS.key_file {encrypted} is encrypted"):
        transport.ServerTLS(certs.server_cert, encrypted)
    not_a_ca = tmp_path / "garbage.pem"
    not_a_ca.write_text("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    with pytest.raises(ValueError, match="ServerTLS.client_ca_file: .* holds no usable PEM"):
        transport.ServerTLS(certs.server_cert, certs.server_key, client_ca_file=not_a_ca)


def test_probe_tells_plaintext_tls_and_nothing_apart(start_server: StartServer, certs: Any) -> None:
    plaintext = start_server()
    tls = start_server(tls=transport.ServerTLS(certs.server_cert, certs.server_key))
    trusted = transport.ClientTLS(certs.ca)
    assert transport.probe(plaintext.target) == transport.Probe("plaintext")
    assert transport.probe(plaintext.target, trusted) == transport.Probe("plaintext")
    assert transport.probe(tls.target) == transport.Probe("tls")
    assert transport.probe(tls.target, trusted) == transport.Probe("tls")
    assert transport.probe(tls.target, transport.ClientTLS(certs.rogue_ca)).finding == "untrusted"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = f"127.0.0.1:{s.getsockname()[1]}"
    found = transport.probe(closed)
    assert found.finding == "unreachable" and found.detail.startswith("connection refused")
    with pytest.raises(ValueError, match="has no port"):
        transport.probe("localhost")


@pytest.mark.parametrize(
    "target,expected",
    [("localhost:8001", ("localhost", 8001)), ("10.0.0.5:1", ("10.0.0.5", 1)),
     ("[::1]:65535", ("::1", 65535)), ("edge-cloud_1.example:443", ("edge-cloud_1.example", 443))],
)  # fmt: skip
def test_parse_target(target: str, expected: tuple[str, int]) -> None:
    assert transport.parse_target(target) == expected


def test_loopback_hosts() -> None:
    assert all(map(transport.is_loopback, ["127.0.0.1", "localhost", "::1", "[::1]", "127.0.0.9"]))
    assert not any(map(transport.is_loopback, ["0.0.0.0", "::", "", "10.1.2.3"]))
