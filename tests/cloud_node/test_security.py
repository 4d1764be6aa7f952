"""Bearer tokens, TLS and mutual TLS on the cloud node, with certificates the tests create."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from protos import transport
from protos.inference import grpc_service_pb2 as pb
from protos.inference import grpc_service_pb2_grpc as pb_grpc


def _live(target: str, **channel: Any) -> bool:
    stub = pb_grpc.GRPCInferenceServiceStub(transport.build_channel(target, **channel))
    return bool(stub.ServerLive(pb.ServerLiveRequest(), timeout=20).live)


def _code(call: Callable[[], Any]) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as info:
        call()
    return info.value.code()


def test_bearer_token(start_cloud: Callable[..., Any]) -> None:
    cloud = start_cloud(tokens=("s3cret", "next-s3cret"))
    assert _live(cloud.target, token="s3cret") and _live(cloud.target, token="next-s3cret")
    assert _code(lambda: _live(cloud.target)) == grpc.StatusCode.UNAUTHENTICATED
    assert _code(lambda: _live(cloud.target, token="guess")) == grpc.StatusCode.UNAUTHENTICATED
    stub = pb_grpc.GRPCInferenceServiceStub(transport.build_channel(cloud.target, token="guess"))
    msg = pb.ModelInferRequest(model_name="digits_cnn")
    assert _code(lambda: stub.ModelInfer(msg, timeout=20)) == grpc.StatusCode.UNAUTHENTICATED
    # Health checks need no token (orchestrators probe them).
    health = health_pb2_grpc.HealthStub(transport.build_channel(cloud.target))
    reply = health.Check(health_pb2.HealthCheckRequest(service="digits_cnn"), timeout=20)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING


def test_tls_and_mutual_tls(certs: Any, start_cloud: Callable[..., Any]) -> None:
    tls = start_cloud(tls=transport.ServerTLS(certs.server_cert, certs.server_key))
    trusting = transport.ClientTLS(root_ca_file=certs.ca)
    assert _live(f"localhost:{tls.port}", tls=trusting)
    assert _live(tls.target, tls=trusting)  # the certificate names 127.0.0.1 too
    # A plaintext client cannot talk to a TLS server.
    assert _code(lambda: _live(tls.target)) == grpc.StatusCode.UNAVAILABLE

    mutual = start_cloud(
        tls=transport.ServerTLS(certs.server_cert, certs.server_key, client_ca_file=certs.ca),
        tokens=("s3cret",),
    )
    with_cert = transport.ClientTLS(
        root_ca_file=certs.ca, cert_file=certs.client_cert, key_file=certs.client_key
    )
    assert _live(mutual.target, tls=with_cert, token="s3cret")
    assert _code(lambda: _live(mutual.target, tls=trusting, token="s3cret")) in (
        grpc.StatusCode.UNAVAILABLE,  # the handshake fails without a client certificate
        grpc.StatusCode.UNKNOWN,
    )
    assert (
        _code(lambda: _live(mutual.target, tls=with_cert, token="bad"))
        == grpc.StatusCode.UNAUTHENTICATED
    )
