"""The one place that builds gRPC servers and channels for edgecut's nodes.

Both ends get the same explicit message limits and compatible keepalive settings, optional TLS
(mutual with a client CA) and an optional bearer token: ``build_server`` + ``add_port`` (bind
port 0 and read the chosen port back) on the cloud, ``build_channel`` on the edge. When a
channel fails, ``probe`` looks at the raw connection (TCP, the first bytes, a TLS handshake)
to say why, because gRPC reports a wrong CA, plaintext against TLS and a refused connection
alike as UNAVAILABLE.
"""

from __future__ import annotations

import collections
import hmac
import ipaddress
import json
import socket
import ssl
from collections.abc import Callable, Iterable, Sequence
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import grpc

__all__ = [
    "AUTHORIZATION_HEADER",
    "DEFAULT_KEEPALIVE",
    "DEFAULT_MAX_MESSAGE_BYTES",
    "HEALTH_METHODS",
    "BearerTokenAuth",
    "ClientTLS",
    "Keepalive",
    "Probe",
    "ServerTLS",
    "add_port",
    "build_channel",
    "build_server",
    "channel_options",
    "channel_target",
    "is_loopback",
    "parse_target",
    "parse_targets",
    "probe",
    "replica_options",
    "server_options",
]

# gRPC's default receive limit is 4 MiB: not even two frames of an early ResNet feature map
# (64x112x112 fp32 = 3.1 MiB each). 64 MiB carries a batch of 16 such frames while still
# bounding what one message can make a process allocate.
DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024 * 1024
_GRPC_MAX_MESSAGE_BYTES = 2**31 - 1  # gRPC stores the limit in a C int

AUTHORIZATION_HEADER = "authorization"  # gRPC metadata keys are lowercase

# Health checks pass without a token so load balancers and orchestrators can probe the server;
# they reveal only "serving or not". Everything else, OIP's ServerLive included, needs the token.
HEALTH_METHODS = frozenset({"/grpc.health.v1.Health/Check", "/grpc.health.v1.Health/Watch"})


@dataclass(frozen=True)
class Keepalive:
    """HTTP/2 keepalive pings, set so that the two ends agree.

    A client that pings more often than the server's ``min_recv_ping_interval_ms`` is cut off
    with GOAWAY "too_many_pings", so one object configures both ends consistently.
    """

    # Cellular NATs drop idle flows after about a minute; a ping every 30 s keeps the edge's
    # connection alive between bursts and detects a dead link within time_ms + timeout_ms.
    time_ms: int = 30_000
    timeout_ms: int = 10_000
    permit_without_calls: bool = True
    # Server side: pings closer together than this (with no data between) count as abuse.
    min_recv_ping_interval_ms: int = 10_000

    def __post_init__(self) -> None:
        for name in ("time_ms", "timeout_ms", "min_recv_ping_interval_ms"):
            if getattr(self, name) <= 0:
                raise ValueError(f"Keepalive.{name} must be > 0, got {getattr(self, name)}")
        if self.min_recv_ping_interval_ms > self.time_ms:
            raise ValueError(
                f"Keepalive.min_recv_ping_interval_ms ({self.min_recv_ping_interval_ms}) must be "
                f"<= time_ms ({self.time_ms}), or the server would reject the client's pings"
            )

    def client_options(self) -> list[tuple[str, int]]:
        return [
            ("grpc.keepalive_time_ms", self.time_ms),
            ("grpc.keepalive_timeout_ms", self.timeout_ms),
            ("grpc.keepalive_permit_without_calls", int(self.permit_without_calls)),
            ("grpc.http2.max_pings_without_data", 0),  # 0: keep pinging an idle connection
        ]

    def server_options(self) -> list[tuple[str, int]]:
        return [
            ("grpc.keepalive_time_ms", self.time_ms),
            ("grpc.keepalive_timeout_ms", self.timeout_ms),
            ("grpc.keepalive_permit_without_calls", int(self.permit_without_calls)),
            ("grpc.http2.min_ping_interval_without_data_ms", self.min_recv_ping_interval_ms),
        ]


DEFAULT_KEEPALIVE = Keepalive()


# ------------------------------------------------------------------------- TLS


def _as_path(owner: str, field: str, value: Path | str) -> Path:
    path = Path(value)
    if not path.exists():
        raise FileNotFoundError(f"{owner}.{field}: {path} does not exist")
    if not path.is_file():
        raise ValueError(f"{owner}.{field}: {path} is not a regular file")
    try:
        text = path.read_bytes()
    except OSError as exc:
        raise PermissionError(f"{owner}.{field}: {path} cannot be read: {exc}") from exc
    marker = b"PRIVATE KEY-----" if field == "key_file" else b"-----BEGIN CERTIFICATE-----"
    if marker not in text:
        wanted = "a PEM private key" if field == "key_file" else "PEM certificate(s)"
        raise ValueError(f"{owner}.{field}: {path} does not hold {wanted}")
    return path


class _EncryptedKey(Exception):
    pass


def _check_key_pair(owner: str, cert_file: Path, key_file: Path) -> None:
    """The key must be the certificate's, or gRPC only says "Failed to bind" (server) or
    fails every handshake (client)."""

    def passphrase() -> bytes:  # called only for an encrypted key; never prompt on a tty
        raise _EncryptedKey

    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_cert_chain(
            cert_file, key_file, password=passphrase
        )
    except _EncryptedKey:
        raise ValueError(
            f"{owner}.key_file {key_file} is encrypted: gRPC needs an unencrypted PEM key "
            "(decrypt it, e.g. `openssl pkey -in KEY -out KEY.plain`, and chmod 600 it)"
        ) from None
    except ssl.SSLError as exc:
        if exc.reason == "KEY_VALUES_MISMATCH":
            raise ValueError(
                f"{owner}.key_file {key_file} does not match {owner}.cert_file {cert_file}: "
                "the key is not the certificate's (give the key the certificate was made for)"
            ) from None
        raise ValueError(
            f"{owner}.cert_file {cert_file} and {owner}.key_file {key_file} do not load as a "
            f"certificate and its key: {exc.reason or exc}"
        ) from None


def _check_ca(owner: str, field: str, path: Path) -> None:
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cafile=path)
    except ssl.SSLError as exc:
        raise ValueError(
            f"{owner}.{field}: {path} holds no usable PEM certificate: {exc.reason or exc}"
        ) from None


@dataclass(frozen=True)
class ServerTLS:
    """Server certificate and key (PEM files); with ``client_ca_file``, mutual TLS is required."""

    cert_file: Path
    key_file: Path
    client_ca_file: Path | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "cert_file", _as_path("ServerTLS", "cert_file", self.cert_file))
        object.__setattr__(self, "key_file", _as_path("ServerTLS", "key_file", self.key_file))
        _check_key_pair("ServerTLS", self.cert_file, self.key_file)
        if self.client_ca_file is not None:
            ca = _as_path("ServerTLS", "client_ca_file", self.client_ca_file)
            _check_ca("ServerTLS", "client_ca_file", ca)
            object.__setattr__(self, "client_ca_file", ca)

    def credentials(self) -> grpc.ServerCredentials:
        """Read the files now (so a rotated certificate is picked up by the next server)."""
        client_ca = self.client_ca_file.read_bytes() if self.client_ca_file else None
        return grpc.ssl_server_credentials(
            [(self.key_file.read_bytes(), self.cert_file.read_bytes())],
            root_certificates=client_ca,
            require_client_auth=client_ca is not None,
        )


@dataclass(frozen=True)
class ClientTLS:
    """How a client verifies the server, and optionally proves itself (mutual TLS).

    ``root_ca_file`` None trusts the system's roots. ``server_name_override`` checks the
    server certificate against that name instead of the target's host (tests, IP targets).
    """

    root_ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    server_name_override: str | None = None

    def __post_init__(self) -> None:
        for name in ("root_ca_file", "cert_file", "key_file"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, _as_path("ClientTLS", name, value))
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError(
                "ClientTLS: cert_file and key_file go together (both for mutual TLS, or neither)"
            )
        if self.root_ca_file is not None:
            _check_ca("ClientTLS", "root_ca_file", self.root_ca_file)
        if self.cert_file is not None and self.key_file is not None:
            _check_key_pair("ClientTLS", self.cert_file, self.key_file)
        if self.server_name_override == "":
            raise ValueError("ClientTLS.server_name_override: use None, not an empty string")

    def credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(
            root_certificates=self.root_ca_file.read_bytes() if self.root_ca_file else None,
            private_key=self.key_file.read_bytes() if self.key_file else None,
            certificate_chain=self.cert_file.read_bytes() if self.cert_file else None,
        )

    def options(self) -> list[tuple[str, str]]:
        if self.server_name_override is None:
            return []
        return [("grpc.ssl_target_name_override", self.server_name_override)]


# ----------------------------------------------------------------- bearer token


def _token_set(tokens: str | Iterable[str]) -> tuple[bytes, ...]:
    values = (tokens,) if isinstance(tokens, str) else tuple(tokens)
    if not values or any(not t or t != t.strip() or " " in t for t in values):
        raise ValueError("bearer tokens must be non-empty and contain no whitespace")
    return tuple(t.encode() for t in values)


class BearerTokenAuth(grpc.ServerInterceptor):
    """Server interceptor: calls without ``authorization: Bearer <token>`` get UNAUTHENTICATED.

    Several tokens may be valid at once (rotation). Methods in ``public_methods`` (default: the
    gRPC health checks) pass without a token.
    """

    def __init__(
        self, tokens: str | Iterable[str], *, public_methods: Iterable[str] = HEALTH_METHODS
    ) -> None:
        self._tokens = _token_set(tokens)
        self._public = frozenset(public_methods)

    def check(self, metadata: Sequence[tuple[str, str | bytes]] | None) -> str | None:
        """None when the call is authorized, else why it is not."""
        values = [v for k, v in metadata or () if k == AUTHORIZATION_HEADER]
        if not values:
            return "missing credentials: send metadata 'authorization: Bearer <token>'"
        value = values[0] if isinstance(values[0], str) else values[0].decode(errors="replace")
        scheme, _, credential = value.strip().partition(" ")
        if scheme.lower() != "bearer" or not credential:
            return "malformed authorization metadata: expected 'Bearer <token>'"
        given = credential.strip().encode()
        # Compare against every token, without early exit, so timing says nothing of which.
        matches = [hmac.compare_digest(given, token) for token in self._tokens]
        return None if any(matches) else "invalid bearer token"

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        if handler_call_details.method in self._public:
            return continuation(handler_call_details)
        reason = self.check(handler_call_details.invocation_metadata)
        handler = continuation(handler_call_details)
        if reason is None or handler is None:
            return handler
        return _denying_handler(handler, reason)


def _denying_handler(handler: grpc.RpcMethodHandler, reason: str) -> grpc.RpcMethodHandler:
    """A handler of the same streaming shape as ``handler`` that only aborts."""

    def deny(_request: Any, context: grpc.ServicerContext) -> Any:
        context.abort(grpc.StatusCode.UNAUTHENTICATED, reason)

    if handler.request_streaming and handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(deny)
    if handler.request_streaming:
        return grpc.stream_unary_rpc_method_handler(deny)
    if handler.response_streaming:
        return grpc.unary_stream_rpc_method_handler(deny)
    return grpc.unary_unary_rpc_method_handler(deny)


class _CallDetails(
    collections.namedtuple(
        "_CallDetails",
        ("method", "timeout", "metadata", "credentials", "wait_for_ready", "compression"),
    ),
    grpc.ClientCallDetails,
):
    pass


class _BearerTokenClient(
    grpc.UnaryUnaryClientInterceptor,
    grpc.UnaryStreamClientInterceptor,
    grpc.StreamUnaryClientInterceptor,
    grpc.StreamStreamClientInterceptor,
):
    """Adds the bearer token to every call's metadata.

    Metadata rather than call credentials, because gRPC sends call credentials only over TLS
    and a token must also work on a plaintext loopback or lab link.
    """

    def __init__(self, token: str) -> None:
        _token_set(token)
        self._header = (AUTHORIZATION_HEADER, f"Bearer {token}")

    def _details(self, details: grpc.ClientCallDetails) -> _CallDetails:
        metadata = [*(details.metadata or ()), self._header]
        return _CallDetails(
            details.method,
            details.timeout,
            metadata,
            details.credentials,
            getattr(details, "wait_for_ready", None),
            getattr(details, "compression", None),
        )

    def _intercept(
        self,
        continuation: Callable[..., Any],
        client_call_details: grpc.ClientCallDetails,
        request_or_iterator: Any,
    ) -> Any:
        return continuation(self._details(client_call_details), request_or_iterator)

    # gRPC calls the one that matches the call's streaming shape, with positional arguments;
    # all four only add the header.
    intercept_unary_unary = _intercept
    intercept_unary_stream = _intercept
    intercept_stream_unary = _intercept
    intercept_stream_stream = _intercept


# ------------------------------------------------------------------- buffers


# -------------------------------------------------------------- servers, channels


def _limit_options(max_message_bytes: int) -> list[tuple[str, int]]:
    if not 0 < max_message_bytes <= _GRPC_MAX_MESSAGE_BYTES:
        raise ValueError(
            f"max_message_bytes must be in 1..{_GRPC_MAX_MESSAGE_BYTES}, got {max_message_bytes}"
        )
    return [
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.max_receive_message_length", max_message_bytes),
    ]


def server_options(
    *, max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES, keepalive: Keepalive = DEFAULT_KEEPALIVE
) -> list[tuple[str, int]]:
    """The channel arguments ``build_server`` sets (exposed for grpc.aio or tests)."""
    # SO_REUSEPORT is on by default in gRPC on Linux: a second server on a busy port would
    # silently share it instead of failing. Binding must fail loudly.
    return [
        *_limit_options(max_message_bytes),
        ("grpc.so_reuseport", 0),
        *keepalive.server_options(),
    ]


def channel_options(
    *, max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES, keepalive: Keepalive = DEFAULT_KEEPALIVE
) -> list[tuple[str, int]]:
    """The channel arguments ``build_channel`` sets (exposed for grpc.aio or tests)."""
    return [*_limit_options(max_message_bytes), *keepalive.client_options()]


def build_server(
    *,
    max_workers: int = 8,
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    keepalive: Keepalive = DEFAULT_KEEPALIVE,
    token: str | Iterable[str] | None = None,
    interceptors: Sequence[grpc.ServerInterceptor] = (),
    max_concurrent_rpcs: int | None = None,
    options: Sequence[tuple[str, Any]] = (),
) -> grpc.Server:
    """A thread-pool gRPC server with limits and keepalive set; no port bound yet (``add_port``).

    ``token`` installs ``BearerTokenAuth`` in front of ``interceptors``. Past
    ``max_concurrent_rpcs`` calls the server answers RESOURCE_EXHAUSTED instead of queueing.
    """
    if max_workers < 1:
        raise ValueError(f"max_workers must be >= 1, got {max_workers}")
    chain: list[grpc.ServerInterceptor] = [BearerTokenAuth(token)] if token is not None else []
    chain += interceptors
    return grpc.server(
        futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="grpc-server"),
        interceptors=chain,
        options=[
            *server_options(max_message_bytes=max_message_bytes, keepalive=keepalive),
            *options,
        ],
        maximum_concurrent_rpcs=max_concurrent_rpcs,
    )


def add_port(server: grpc.Server, address: str, tls: ServerTLS | None = None) -> int:
    """Bind ``address`` (``host:port``; port 0 picks a free one) and return the bound port."""
    try:
        if tls is None:
            port = server.add_insecure_port(address)
        else:
            port = server.add_secure_port(address, tls.credentials())
    except RuntimeError as exc:  # raised by recent grpcio on bind failure
        raise OSError(f"could not bind gRPC server to {address}: {exc}") from exc
    if port == 0:  # returned by older grpcio on bind failure
        raise OSError(f"could not bind gRPC server to {address}")
    return int(port)


def build_channel(
    target: str,
    *,
    tls: ClientTLS | None = None,
    token: str | None = None,
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    keepalive: Keepalive = DEFAULT_KEEPALIVE,
    options: Sequence[tuple[str, Any]] = (),
) -> grpc.Channel:
    """A channel to ``target`` (``host:port``) with limits, keepalive, TLS and token set.

    A token on a channel without TLS travels in clear text: acceptable on loopback or a
    private lab link only.
    """
    all_options = [
        *channel_options(max_message_bytes=max_message_bytes, keepalive=keepalive),
        *(tls.options() if tls else ()),
        *options,
    ]
    if tls is None:
        channel = grpc.insecure_channel(target, options=all_options)
    else:
        channel = grpc.secure_channel(target, tls.credentials(), options=all_options)
    if token is not None:
        channel = grpc.intercept_channel(channel, _BearerTokenClient(token))
    return channel


# ------------------------------------------------------------ targets and probes


_REPLICAS_EXAMPLE = "10.0.0.5:8001,10.0.0.6:8001"


def parse_target(target: str) -> tuple[str, int]:
    """``host:port`` or ``[ipv6]:port`` as ``(host, port)``; ValueError says what is wrong.

    gRPC accepts more (``dns:///``, ``unix:``) but answers a typo only with UNAVAILABLE,
    which looks like an outage; edgecut's nodes meet over TCP, so the address is checked once.
    """
    example = "expected HOST:PORT, e.g. localhost:8001, 10.0.0.5:8001 or [::1]:8001"
    if not target or "/" in target or any(c.isspace() for c in target):
        raise ValueError(f"{target!r} is not an address: {example}")
    if target.startswith("["):
        host, bracket, rest = target[1:].partition("]")
        if not bracket or not rest.startswith(":"):
            raise ValueError(f"{target!r} is not an address: {example}")
        port_text = rest[1:]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"{target!r}: {host!r} in brackets is not an IPv6 address") from None
    else:
        host, colon, port_text = target.rpartition(":")
        if not colon:
            raise ValueError(f"{target!r} has no port: {example}")
        if ";" in target:
            raise ValueError(f"{target!r}: separate replicas with commas, e.g. {_REPLICAS_EXAMPLE}")
        if ":" in host:
            raise ValueError(f"{target!r}: write an IPv6 address in brackets, e.g. [::1]:8001")
        if not host or not all(c.isascii() and (c.isalnum() or c in ".-_") for c in host):
            raise ValueError(f"{target!r} has no valid host name before the port: {example}")
    if not (port_text.isascii() and port_text.isdigit() and 1 <= int(port_text) <= 65535):
        raise ValueError(f"{target!r}: the port {port_text!r} is not a number in 1..65535")
    return host, int(port_text)


def parse_targets(targets: str) -> list[tuple[str, int]]:
    """One address or several, comma-separated (replicas of one cloud), as ``(host, port)``s.

    Several addresses must be IP literals of one family: gRPC balances over a list of IPs, and
    over the addresses one DNS name resolves to, but not over a list of names. ValueError says
    what is wrong.
    """
    parts = targets.split(",")
    if len(parts) > 1 and not all(parts):
        raise ValueError(
            f"{targets!r} has an empty entry: list the replicas as {_REPLICAS_EXAMPLE}"
        )
    addresses = [parse_target(part) for part in parts]
    if len(addresses) > 1:
        seen: set[tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, int]] = set()
        for part, (host, port) in zip(parts, addresses, strict=True):
            try:
                ip = ipaddress.ip_address(host)
            except ValueError:
                raise ValueError(
                    f"{targets!r}: {part!r} names a host; a list of replicas takes IP addresses "
                    f"(e.g. {_REPLICAS_EXAMPLE}), or give one DNS name that resolves to every "
                    "replica"
                ) from None
            # One replica spelled two ways ([::1] and [0::1], ::ffff:10.0.0.1 and ::ffff:a00:1)
            # would get two shares of round_robin: compare addresses, not text.
            if (ip, port) in seen:
                raise ValueError(f"{targets!r} lists {part!r} twice (as the same address)")
            seen.add((ip, port))
        if len({ip.version for ip, _port in seen}) > 1:
            raise ValueError(f"{targets!r} mixes IPv4 and IPv6 addresses: list one family")
    return addresses


def channel_target(targets: str) -> str:
    """The gRPC target of one address or several (:func:`parse_targets`): a list becomes
    ``ipv4:a:p,b:q`` (or ``ipv6:[a]:p,...``), one address stays as it is (DNS resolves it)."""
    addresses = parse_targets(targets)
    if len(addresses) == 1:
        return targets
    if ipaddress.ip_address(addresses[0][0]).version == 4:
        return "ipv4:" + ",".join(f"{host}:{port}" for host, port in addresses)
    return "ipv6:" + ",".join(f"[{host}]:{port}" for host, port in addresses)


# Up to 5 attempts (gRPC's cap) 10 ms apart and more: enough for the picker to learn that a
# replica died and send the call to a live one, well inside a frame's deadline.
_RETRY_POLICY = {
    "maxAttempts": 5,
    "initialBackoff": "0.01s",
    "maxBackoff": "0.2s",
    "backoffMultiplier": 2,
    "retryableStatusCodes": ["UNAVAILABLE"],
}


def replica_options(
    retry_services: Sequence[str],
    *,
    health_service: str = "",
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
) -> list[tuple[str, Any]]:
    """Channel options that spread calls over every address of the target and fail over.

    gRPC's own machinery, in the channel's service config: ``round_robin`` over the addresses
    (a list, or every address a name resolves to); client-side health checking, so a replica
    whose ``grpc.health.v1`` status for ``health_service`` is not SERVING (loading, draining)
    gets no calls (a server without the health service counts as healthy); and retries of
    ``retry_services``' calls that end UNAVAILABLE before the server answered (a replica killed
    with the call in flight), which gRPC sends to another replica. A retried call is answered
    once: the client sees one response or one error. Requests up to ``max_message_bytes`` are
    kept for a retry (gRPC keeps only 256 KiB by default and would not retry a larger one).
    """
    config = {
        "loadBalancingConfig": [{"round_robin": {}}],
        "healthCheckConfig": {"serviceName": health_service},
        "methodConfig": [
            {"name": [{"service": name} for name in retry_services], "retryPolicy": _RETRY_POLICY}
        ],
    }
    return [
        ("grpc.service_config", json.dumps(config)),
        ("grpc.enable_retries", 1),
        ("grpc.per_rpc_retry_buffer_size", max_message_bytes),
    ]


def is_loopback(host: str) -> bool:
    """Whether a server bound to ``host`` is reachable from this machine only."""
    name = host.strip("[]")
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(name, None)
    except OSError:  # "" (every interface) lands here too
        return False
    addresses = {str(info[4][0]).partition("%")[0] for info in infos}
    return bool(addresses) and all(ipaddress.ip_address(a).is_loopback for a in addresses)


Finding = Literal[
    "unreachable",  # no TCP connection: detail says why (refused, no such name, timeout)
    "plaintext",  # HTTP/2 without TLS
    "tls",  # TLS, and the given ClientTLS (if any) passed: handshake and first frame
    "untrusted",  # TLS, but the certificate does not verify with the given roots
    "wrong_name",  # TLS, a trusted certificate that does not name the host
    "client_cert_refused",  # TLS, but the server hung up on the client's certificate (or none)
    "handshake_failed",  # TLS, but the handshake with the given ClientTLS failed otherwise
    "not_grpc",  # something answered that is neither HTTP/2 nor TLS
]


@dataclass(frozen=True)
class Probe:
    """What a raw look at an endpoint found (see :func:`probe`); ``detail`` says more."""

    finding: Finding
    detail: str = ""


# The HTTP/2 client preface and an empty SETTINGS frame: a gRPC server without TLS answers
# with its own SETTINGS frame (9-byte header, type 0x4); a TLS server hangs up on it.
_H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
_H2_FRAME_HEADER_BYTES = 9
_H2_SETTINGS = 0x4
# OpenSSL's X509_V_ERR_HOSTNAME_MISMATCH and X509_V_ERR_IP_ADDRESS_MISMATCH
_X509_NAME_MISMATCH = frozenset({62, 64})


class _Unreachable(Exception):
    pass


def _connect(host: str, port: int, timeout_s: float) -> socket.socket:
    try:
        return socket.create_connection((host, port), timeout=timeout_s)
    except socket.gaierror as exc:
        raise _Unreachable(f"the name {host!r} does not resolve ({exc.strerror})") from None
    except ConnectionRefusedError:
        raise _Unreachable(f"connection refused: nothing listens on port {port}") from None
    except TimeoutError:
        raise _Unreachable(f"no answer to a TCP connection within {timeout_s:g} s") from None
    except OSError as exc:
        raise _Unreachable(exc.strerror or str(exc)) from None


def _first_bytes(sock: socket.socket) -> bytes:
    """Send the HTTP/2 preface and read the start of the answer (b"": hung up or silent)."""
    data = b""
    try:
        sock.sendall(_H2_PREFACE)
        while len(data) < _H2_FRAME_HEADER_BYTES:
            chunk = sock.recv(64)
            if not chunk:
                break
            data += chunk
    except (OSError, ssl.SSLError):
        pass
    return data


def _is_h2_settings(data: bytes) -> bool:
    return len(data) >= _H2_FRAME_HEADER_BYTES and data[3] == _H2_SETTINGS


def _tls_context(tls: ClientTLS | None) -> ssl.SSLContext:
    """``tls`` as Python's ssl sees it; None: accept any certificate (is it TLS at all?)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.set_alpn_protocols(["h2"])
    context.check_hostname = False  # checked separately, to tell the two failures apart
    if tls is None:
        context.verify_mode = ssl.CERT_NONE
        return context
    if tls.root_ca_file is not None:
        context.load_verify_locations(cafile=tls.root_ca_file)
    else:  # gRPC's own root bundle and the system's agree on public CAs
        context.load_default_certs()
    if tls.cert_file is not None and tls.key_file is not None:
        context.load_cert_chain(tls.cert_file, tls.key_file)
    return context


def _certificate_names(host: str, port: int, tls: ClientTLS, timeout_s: float) -> str:
    try:
        with _connect(host, port, timeout_s) as raw, _tls_context(tls).wrap_socket(raw) as sock:
            names: Any = (sock.getpeercert() or {}).get("subjectAltName", ())
    except (_Unreachable, OSError):
        return "?"
    # (("DNS", "localhost"), ("IP Address", "127.0.0.1")) -> "DNS:localhost, IP:127.0.0.1"
    return ", ".join(f"{str(kind).split()[0]}:{value}" for kind, value in names) or "none"


def probe(target: str, tls: ClientTLS | None = None, timeout_s: float = 5.0) -> Probe:
    """Connect to ``target`` without gRPC and say what is there, as seen with ``tls``.

    gRPC reports every connection failure as UNAVAILABLE with free-form details; this looks
    at the wire: TCP, then the first bytes the server sends back to an HTTP/2 preface, then
    TLS handshakes (any certificate; then ``tls``'s roots, client certificate and name).
    Raises ValueError for a malformed target (see :func:`parse_target`).
    """
    host, port = parse_target(target)
    try:
        with _connect(host, port, timeout_s) as sock:
            first = _first_bytes(sock)
    except _Unreachable as exc:
        return Probe("unreachable", str(exc))
    if _is_h2_settings(first):
        return Probe("plaintext")
    if first:
        shown = first[:24].decode("ascii", "replace").splitlines()[0]
        return Probe("not_grpc", f"it answered HTTP/2 with {shown!r}")
    try:
        with _connect(host, port, timeout_s) as raw, _tls_context(None).wrap_socket(raw):
            pass
    except _Unreachable as exc:
        return Probe("unreachable", str(exc))
    except (OSError, ssl.SSLError) as exc:
        return Probe("not_grpc", f"it hung up on HTTP/2 and on a TLS handshake ({exc})")
    if tls is None:
        return Probe("tls")
    name = tls.server_name_override or host
    context = _tls_context(tls)
    context.check_hostname = True
    try:
        raw = _connect(host, port, timeout_s)
    except _Unreachable as exc:
        return Probe("unreachable", str(exc))
    try:
        with raw, context.wrap_socket(raw, server_hostname=name) as sock:
            answer = _first_bytes(sock)
    except ssl.SSLCertVerificationError as exc:
        if exc.verify_code in _X509_NAME_MISMATCH:
            names = _certificate_names(host, port, tls, timeout_s)
            return Probe("wrong_name", f"it names {names}, not {name!r}")
        return Probe("untrusted", str(exc.verify_message))
    except (OSError, ssl.SSLError) as exc:
        return Probe("handshake_failed", str(getattr(exc, "reason", None) or exc))
    if _is_h2_settings(answer):
        return Probe("tls")
    # TLS 1.3 finishes the client's handshake before the server judges the client's
    # certificate; a gRPC server that refuses it (or its absence) then just hangs up.
    sent = "a certificate" if tls.cert_file is not None else "no certificate"
    return Probe("client_cert_refused", f"it hung up after the handshake; the edge sent {sent}")
