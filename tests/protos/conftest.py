"""Fixtures for the protos tests: an echo OIP server, the tritonclient peer.

tests/protos has no __init__.py on purpose: as a package it would be importable as ``protos``
and shadow the real one.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health, health_pb2_grpc

from protos import serde, transport
from protos.errors import TensorWireError
from protos.inference import grpc_service_pb2 as pb
from protos.inference import grpc_service_pb2_grpc as pb_grpc

PEER = Path(__file__).with_name("triton_peer.py")


# ------------------------------------------------------------------ echo server


@dataclass
class EchoServicer(pb_grpc.GRPCInferenceServiceServicer):
    """A minimal OIP server: every input comes back as output '<name>_echo'."""

    max_bytes: int | None = None
    received: list[serde.InferRequest] = field(default_factory=list)

    def ServerLive(self, request: Any, context: Any) -> pb.ServerLiveResponse:
        return pb.ServerLiveResponse(live=True)

    def ServerReady(self, request: Any, context: Any) -> pb.ServerReadyResponse:
        return pb.ServerReadyResponse(ready=True)

    def ModelInfer(self, request: pb.ModelInferRequest, context: Any) -> pb.ModelInferResponse:
        try:
            decoded = serde.request_from_proto(request, max_bytes=self.max_bytes)
        except TensorWireError as exc:
            context.abort(grpc.StatusCode[exc.code], str(exc))
        self.received.append(decoded)
        response = serde.InferResponse(
            model_name=decoded.model_name,
            model_version=decoded.model_version or "1",
            id=decoded.id,
            outputs={f"{name}_echo": array for name, array in decoded.inputs.items()},
            parameters=decoded.parameters,
        )
        return serde.response_to_proto(response)


@dataclass
class RunningServer:
    port: int
    servicer: EchoServicer
    server: grpc.Server

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"


@pytest.fixture
def start_server() -> Iterator[Callable[..., RunningServer]]:
    """Factory: start an echo server (with a health service) on 127.0.0.1:0."""
    started: list[grpc.Server] = []

    def start(
        *, tls: transport.ServerTLS | None = None, max_bytes: int | None = None, **kwargs: Any
    ) -> RunningServer:
        server = transport.build_server(max_workers=4, **kwargs)
        # The stubs mark every RPC abstract; at run time the base answers UNIMPLEMENTED.
        servicer = EchoServicer(max_bytes=max_bytes)  # type: ignore[abstract]
        pb_grpc.add_GRPCInferenceServiceServicer_to_server(servicer, server)
        health_pb2_grpc.add_HealthServicer_to_server(health.HealthServicer(), server)
        port = transport.add_port(server, "127.0.0.1:0", tls)
        server.start()
        started.append(server)
        return RunningServer(port, servicer, server)

    yield start
    for server in started:
        server.stop(grace=None)


# ------------------------------------------------------------ tritonclient peer


@pytest.fixture(scope="session")
def run_peer() -> Callable[[str, Path], None]:
    # find_spec, not importorskip: importing tritonclient.grpc here would clash with protos.
    if importlib.util.find_spec("tritonclient") is None:
        pytest.skip("tritonclient[grpc] is a test dependency")

    def run(mode: str, path: Path) -> None:
        proc = subprocess.run(
            [sys.executable, str(PEER), mode, str(path)],
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert proc.returncode == 0, f"triton peer {mode} failed:\n{proc.stderr}"

    return run
