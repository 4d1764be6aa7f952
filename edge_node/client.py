"""The edge's gRPC client of a cloud node: ModelInfer with a deadline, pings, ListCuts.

Built on :func:`protos.transport.build_channel` (limits, keepalive, TLS, bearer token) with a
short reconnect backoff, so a cloud that comes back is found within about a second. The cloud
may be several replicas (``"10.0.0.5:8001,10.0.0.6:8001"``, or one name that resolves to
several addresses): gRPC spreads the calls over the healthy ones (``round_robin`` with
client-side health checking) and retries a call whose replica died under it on another
(:func:`protos.transport.replica_options`), so each frame is answered once. An
optional :class:`~edge_node.throttle.TokenBucket` delays each request as an emulated uplink
would. Every failure is a :class:`CloudError` carrying the gRPC status name;
:meth:`CloudClient.explain` tells a misconfiguration (wrong CA, plaintext against TLS, a
refused token...: an EdgecutError naming what to fix) from a cloud that is just not there.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import grpc

from edge_node.throttle import TokenBucket
from partitioner.deploy import crossing
from partitioner.errors import EdgecutError
from protos import allocator, serde, splice, transport
from protos.edgecut.v1 import edgecut_pb2 as cpb
from protos.edgecut.v1 import edgecut_pb2_grpc as cpb_grpc
from protos.errors import TensorWireError
from protos.inference import grpc_service_pb2 as pb
from protos.inference import grpc_service_pb2_grpc as pb_grpc

# gRPC's default reconnect backoff grows to two minutes: far too long to notice that a
# restarted cloud is back. Cap it at one second.
_RECONNECT_OPTIONS = (
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
)
# ModelInfer, ServerLive and ModelReady change nothing on the server: safe to retry elsewhere.
_INFERENCE_SERVICE = pb.DESCRIPTOR.services_by_name["GRPCInferenceService"].full_name


class CloudError(Exception):
    """A call to the cloud that failed; ``code`` is the gRPC status name."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


@dataclass(frozen=True)
class CallTiming:
    """Where one ModelInfer's time went, as far as the edge can tell."""

    elapsed_s: float  # from before the (emulated) uplink to the decoded response
    uplink_wait_s: float  # time the emulated uplink held the request (0 without one)
    server_s: float  # the server's own handling time, as it reported it
    queue_s: float
    compute_s: float
    batch_frames: int
    request_bytes: int  # the serialized request: what crossed the uplink


def _float_param(params: Any, key: str) -> float:
    value = params.get(key, 0.0)
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0.0


class CloudClient:
    """One channel to a cloud node, or to several replicas of one (comma-separated)."""

    def __init__(
        self,
        target: str,
        *,
        tls: transport.ClientTLS | None = None,
        token: str | None = None,
        max_message_bytes: int = transport.DEFAULT_MAX_MESSAGE_BYTES,
        uplink: TokenBucket | None = None,
    ) -> None:
        try:
            self.addresses = [
                f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
                for host, port in transport.parse_targets(target)
            ]
        except ValueError as exc:
            raise EdgecutError(f"cloud address {exc}") from None
        self.target = target
        self.uplink = uplink
        self._tls = tls
        self._has_token = token is not None
        allocator.keep_freed_memory()  # buffers and activations reused, not refaulted
        self._channel = transport.build_channel(
            transport.channel_target(target),
            tls=tls,
            token=token,
            max_message_bytes=max_message_bytes,
            options=[
                *_RECONNECT_OPTIONS,
                *transport.replica_options(
                    [_INFERENCE_SERVICE], max_message_bytes=max_message_bytes
                ),
            ],
        )
        self._infer = pb_grpc.GRPCInferenceServiceStub(self._channel)
        # ModelInfer as bytes both ways: tensors are spliced, not copied through protobuf.
        self._model_infer = self._channel.unary_unary(
            "/inference.GRPCInferenceService/ModelInfer", _registered_method=True
        )
        self._control = cpb_grpc.EdgecutServiceStub(self._channel)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> CloudClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def infer(
        self, request: serde.InferRequest, timeout_s: float
    ) -> tuple[serde.InferResponse, CallTiming]:
        """Send one ModelInfer; the deadline covers the emulated uplink wait too."""
        data = splice.request_to_wire(request)
        nbytes = len(data)
        start = time.monotonic()
        waited = self.uplink.send(nbytes) if self.uplink is not None else 0.0
        remaining = timeout_s - (time.monotonic() - start)
        if remaining <= 0:
            raise CloudError(
                "DEADLINE_EXCEEDED", f"the uplink took {waited * 1e3:.0f} ms, past the deadline"
            )
        try:
            reply = self._model_infer(data, timeout=remaining)
        except grpc.RpcError as exc:
            raise CloudError(exc.code().name, exc.details() or "") from None
        try:
            response = splice.response_from_wire(reply)
        except TensorWireError as exc:
            raise CloudError("DATA_LOSS", f"the cloud's response does not decode: {exc}") from None
        elapsed = time.monotonic() - start
        params = response.parameters
        batch = params.get(crossing.BATCH_FRAMES_PARAM, 0)
        timing = CallTiming(
            elapsed_s=elapsed,
            uplink_wait_s=waited,
            server_s=_float_param(params, crossing.SERVER_MS_PARAM) / 1e3,
            queue_s=_float_param(params, crossing.QUEUE_MS_PARAM) / 1e3,
            compute_s=_float_param(params, crossing.COMPUTE_MS_PARAM) / 1e3,
            batch_frames=int(batch) if isinstance(batch, int) else 0,
            request_bytes=nbytes,
        )
        return response, timing

    def ping(self, timeout_s: float = 1.0) -> float:
        """ServerLive's round trip in seconds (a tiny message: the base RTT plus overhead)."""
        start = time.monotonic()
        if self.uplink is not None:  # an emulated link delays pings as it delays data
            self.uplink.send(0)
        try:
            self._infer.ServerLive(pb.ServerLiveRequest(), timeout=timeout_s)
        except grpc.RpcError as exc:
            raise CloudError(exc.code().name, exc.details() or "") from None
        return time.monotonic() - start

    def model_ready(self, model: str, version: str = "", timeout_s: float = 2.0) -> bool:
        try:
            reply = self._infer.ModelReady(
                pb.ModelReadyRequest(name=model, version=version), timeout=timeout_s
            )
        except grpc.RpcError as exc:
            raise CloudError(exc.code().name, exc.details() or "") from None
        return bool(reply.ready)

    def list_cuts(self, model: str = "", timeout_s: float = 5.0) -> cpb.ListCutsResponse:
        try:
            return self._control.ListCuts(
                cpb.ListCutsRequest(model_name=model, include_breakpoints=True), timeout=timeout_s
            )
        except grpc.RpcError as exc:
            raise CloudError(exc.code().name, exc.details() or "") from None

    def explain(self, error: CloudError, timeout_s: float = 5.0) -> str:
        """Why ``error`` happened: raises EdgecutError (one line: what to fix) when the edge's
        configuration cannot work with this cloud, returns the reason when it is just absent.

        gRPC says UNAVAILABLE alike for a refused connection, a wrong CA and plaintext against
        TLS; for those :func:`protos.transport.probe` looks at the connection itself.
        """
        where = f"cloud {self.target}"
        code, message = error.code, error.message
        if code == "UNAUTHENTICATED":
            if not self._has_token:
                raise EdgecutError(
                    f"{where} requires a bearer token: give --token-file ({message})"
                )
            raise EdgecutError(
                f"{where} refused the edge: {message}: --token-file must hold a token that the "
                "cloud's --token-file lists"
            )
        if code == "PERMISSION_DENIED":
            raise EdgecutError(f"{where} refused the edge: {message}")
        if code == "UNIMPLEMENTED":
            raise EdgecutError(
                f"{where} is not an edgecut cloud node ({message}): point --cloud at "
                "`edgecut cloud serve`"
            )
        if code not in ("UNAVAILABLE", "DEADLINE_EXCEEDED"):
            raise EdgecutError(f"{where} failed the edge's start-up check: {code}: {message}")
        if len(self.addresses) == 1:
            return self._explain_address(self.target, code, message, timeout_s)
        # Replicas: any one misconfigured is an error; otherwise say why each is absent.
        return "; ".join(
            f"{address}: {self._explain_address(address, code, message, timeout_s)}"
            for address in self.addresses
        )

    def _explain_address(self, address: str, code: str, message: str, timeout_s: float) -> str:
        """:meth:`explain`'s look at one address of the cloud's, by :func:`transport.probe`."""
        where = f"cloud {address}"
        found = transport.probe(address, self._tls, timeout_s)
        tls = self._tls
        ca = f"--tls-ca {tls.root_ca_file}" if tls and tls.root_ca_file else "the system's roots"
        if found.finding == "unreachable":
            return found.detail
        if found.finding == "plaintext" and tls is not None:
            raise EdgecutError(
                f"{where} speaks plaintext gRPC, not TLS: drop --tls/--tls-ca, or start the "
                "cloud with --tls-cert and --tls-key"
            )
        if found.finding == "tls" and tls is None:
            raise EdgecutError(
                f"{where} speaks TLS but --tls-ca was not given: pass --tls-ca with the CA "
                "that signed its certificate (or --tls to trust the system's roots)"
            )
        if found.finding == "untrusted":
            raise EdgecutError(
                f"{where} presents a certificate that {ca} cannot verify ({found.detail}): "
                "pass --tls-ca with the CA that signed it"
            )
        if found.finding == "wrong_name":
            raise EdgecutError(
                f"{where} presents a certificate for another name ({found.detail}): connect "
                "by a name it holds, or pass --tls-server-name"
            )
        if found.finding == "client_cert_refused":
            if tls is None or tls.cert_file is None:
                raise EdgecutError(
                    f"{where} requires a client certificate (mutual TLS): pass --tls-cert and "
                    "--tls-key"
                )
            raise EdgecutError(
                f"{where} refused the client certificate --tls-cert {tls.cert_file} "
                f"({found.detail}): it must be signed by a CA in the cloud's --tls-client-ca"
            )
        if found.finding == "handshake_failed":
            raise EdgecutError(f"{where}: the TLS handshake failed: {found.detail}")
        if found.finding == "not_grpc":
            raise EdgecutError(
                f"{where} is not a gRPC server: {found.detail} (is --cloud the metrics port?)"
            )
        return f"{code}: {message}"  # the connection looks right: a cloud busy or stopping
