"""The edge's start-up check: a misconfiguration stops the node with one line saying what to
fix; an absent cloud is waited for, then also stops it. Fallback is for after a good start.

Every case runs against a real cloud node (plaintext, TLS, mutual TLS with a token) on
127.0.0.1:0, with the certificates of tests/conftest.py.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from cloud_node.server import CloudConfig, CloudNode
from edge_node.client import CloudClient, CloudError
from edge_node.heads import EdgeModel
from edge_node.node import EdgeConfig, EdgeNode
from edge_node.sources import SyntheticSource
from partitioner.errors import EdgecutError
from protos import transport

TOKEN = "s3cret"


def _start(repo: Any, **config: Any) -> Iterator[str]:
    node = CloudNode(CloudConfig(repository=repo.root, port=0, threads=1, **config))
    port = node.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        node.stop(grace_s=0)


@pytest.fixture(scope="module")
def tls_cloud(repo: Any, certs: Any) -> Iterator[str]:
    """TLS (certificate for localhost, edgecut.test and 127.0.0.1) and a bearer token."""
    yield from _start(
        repo, tls=transport.ServerTLS(certs.server_cert, certs.server_key), tokens=(TOKEN,)
    )


@pytest.fixture(scope="module")
def mutual_cloud(repo: Any, certs: Any) -> Iterator[str]:
    tls = transport.ServerTLS(certs.server_cert, certs.server_key, client_ca_file=certs.ca)
    yield from _start(repo, tls=tls)


def _check(target: str, edge_model: EdgeModel, **client: Any) -> EdgeNode:
    with CloudClient(target, **client) as c:
        return EdgeNode(edge_model, c, EdgeConfig(version="1", start_timeout_s=0))


def _refused(target: str, edge_model: EdgeModel, **client: Any) -> str:
    with pytest.raises(EdgecutError) as err:
        _check(target, edge_model, **client)
    return str(err.value)


def test_a_good_configuration_passes(
    edge_model: EdgeModel, tls_cloud: str, mutual_cloud: str, certs: Any
) -> None:
    _check(tls_cloud, edge_model, tls=transport.ClientTLS(certs.ca), token=TOKEN)
    mutual = transport.ClientTLS(certs.ca, certs.client_cert, certs.client_key)
    _check(mutual_cloud, edge_model, tls=mutual)


def test_plaintext_against_tls(edge_model: EdgeModel, tls_cloud: str) -> None:
    assert _refused(tls_cloud, edge_model, token=TOKEN) == (
        f"cloud {tls_cloud} speaks TLS but --tls-ca was not given: pass --tls-ca with the CA "
        "that signed its certificate (or --tls to trust the system's roots)"
    )


def test_tls_against_plaintext(edge_model: EdgeModel, cloud: str, certs: Any) -> None:
    assert _refused(cloud, edge_model, tls=transport.ClientTLS(certs.ca)) == (
        f"cloud {cloud} speaks plaintext gRPC, not TLS: drop --tls/--tls-ca, or start the cloud "
        "with --tls-cert and --tls-key"
    )


def test_a_ca_that_did_not_sign_the_certificate(
    edge_model: EdgeModel, tls_cloud: str, certs: Any
) -> None:
    message = _refused(tls_cloud, edge_model, tls=transport.ClientTLS(certs.rogue_ca), token=TOKEN)
    assert message == (
        f"cloud {tls_cloud} presents a certificate that --tls-ca {certs.rogue_ca} cannot verify "
        "(unable to get local issuer certificate): pass --tls-ca with the CA that signed it"
    )
    # Without --tls-ca the system's roots are used, and they do not know the test CA either.
    message = _refused(tls_cloud, edge_model, tls=transport.ClientTLS(), token=TOKEN)
    assert "presents a certificate that the system's roots cannot verify" in message


def test_a_certificate_for_another_name(edge_model: EdgeModel, tls_cloud: str, certs: Any) -> None:
    tls = transport.ClientTLS(certs.ca, server_name_override="other.test")
    assert _refused(tls_cloud, edge_model, tls=tls, token=TOKEN) == (
        f"cloud {tls_cloud} presents a certificate for another name (it names DNS:localhost, "
        "DNS:edgecut.test, IP:127.0.0.1, not 'other.test'): connect by a name it holds, or "
        "pass --tls-server-name"
    )


def test_a_missing_or_wrong_token(edge_model: EdgeModel, tls_cloud: str, certs: Any) -> None:
    tls = transport.ClientTLS(certs.ca)
    assert _refused(tls_cloud, edge_model, tls=tls).startswith(
        f"cloud {tls_cloud} requires a bearer token: give --token-file (missing credentials"
    )
    assert _refused(tls_cloud, edge_model, tls=tls, token="guess") == (
        f"cloud {tls_cloud} refused the edge: invalid bearer token: --token-file must hold a "
        "token that the cloud's --token-file lists"
    )


def test_mutual_tls_without_or_with_a_foreign_client_certificate(
    edge_model: EdgeModel, mutual_cloud: str, certs: Any
) -> None:
    assert _refused(mutual_cloud, edge_model, tls=transport.ClientTLS(certs.ca)) == (
        f"cloud {mutual_cloud} requires a client certificate (mutual TLS): pass --tls-cert and "
        "--tls-key"
    )
    rogue = transport.ClientTLS(certs.ca, certs.rogue_client_cert, certs.rogue_client_key)
    assert _refused(mutual_cloud, edge_model, tls=rogue) == (
        f"cloud {mutual_cloud} refused the client certificate --tls-cert "
        f"{certs.rogue_client_cert} (it hung up after the handshake; the edge sent a "
        "certificate): it must be signed by a CA in the cloud's --tls-client-ca"
    )


@pytest.mark.parametrize(
    "target,problem",
    [
        ("localhost", "'localhost' has no port"),
        ("localhost:abc", "the port 'abc' is not a number in 1..65535"),
        ("127.0.0.1:70000", "the port '70000' is not a number in 1..65535"),
        ("http://localhost:8001", "'http://localhost:8001' is not an address"),
        ("::1:8001", "write an IPv6 address in brackets"),
        ("", "'' is not an address"),
    ],
)
def test_a_malformed_address_is_refused_before_any_call(target: str, problem: str) -> None:
    with pytest.raises(EdgecutError, match="^cloud address ") as err:
        CloudClient(target)
    assert problem in str(err.value)


def test_something_else_on_the_port(edge_model: EdgeModel, repo: Any) -> None:
    node = CloudNode(CloudConfig(repository=repo.root, port=0, threads=1, metrics_port=0))
    node.start()
    try:
        target = f"127.0.0.1:{node.metrics_port}"
        message = _refused(target, edge_model)
    finally:
        node.stop(grace_s=0)
    assert message.startswith(f"cloud {target} is not a gRPC server: it answered HTTP/2 with")
    assert message.endswith("(is --cloud the metrics port?)")


def test_an_unreachable_cloud_stops_the_edge_after_the_start_timeout(
    edge_model: EdgeModel, closed_port: str
) -> None:
    port = closed_port.rpartition(":")[2]
    assert _refused(closed_port, edge_model) == (
        f"cloud {closed_port} cannot be reached: connection refused: nothing listens on port "
        f"{port} (tried for 0 s): start the cloud first, or fix --cloud"
    )


class _Seen(logging.Handler):
    """Sets ``event`` once a record containing ``text`` is logged."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text
        self.event = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if self.text in record.getMessage():
            self.event.set()


def test_a_cloud_that_comes_up_during_the_start_timeout_is_used(
    repo: Any, edge_model: EdgeModel, closed_port: str
) -> None:
    port = int(closed_port.rpartition(":")[2])
    seen = _Seen("not reachable yet")
    edge_log = logging.getLogger("edge_node")
    edge_log.addHandler(seen)
    nodes: list[CloudNode] = []

    def start_cloud_once_the_edge_waits() -> None:
        if seen.event.wait(timeout=120):
            node = CloudNode(CloudConfig(repository=repo.root, port=port, threads=1))
            nodes.append(node)
            node.start()

    starter = threading.Thread(target=start_cloud_once_the_edge_waits, daemon=True)
    starter.start()
    try:
        with CloudClient(closed_port) as client:
            config = EdgeConfig(version="1", start_timeout_s=300, retry_interval_s=0)
            node = EdgeNode(edge_model, client, config)
            # The cloud answers the check as soon as it listens; frames wait for its tails.
            starter.join(timeout=120)
            results = [node.process(f) for f in SyntheticSource((1, 1, 8, 8), frames=2)]
    finally:
        edge_log.removeHandler(seen)
        starter.join(timeout=120)
        for cloud in nodes:
            cloud.stop(grace_s=0)
    assert seen.event.is_set() and nodes
    assert [r.where for r in results] == ["cloud", "cloud"]


class _StandardServerClient(CloudClient):
    """A real cloud node seen as Triton or MLServer see it: no edgecut ListCuts."""

    def list_cuts(self, model: str = "", timeout_s: float = 5.0) -> Any:
        raise CloudError("UNIMPLEMENTED", "Method not found: edgecut.Control/ListCuts")


def test_a_standard_oip_server_is_checked_by_model_ready(
    repo: Any, edge_model: EdgeModel, cloud: str, caplog: pytest.LogCaptureFixture
) -> None:
    with _StandardServerClient(cloud) as client, caplog.at_level(logging.WARNING):
        node = EdgeNode(edge_model, client, EdgeConfig(version="1"))
        result = node.process(next(iter(SyntheticSource((1, 1, 8, 8), frames=1))))
    assert result.where == "cloud" and result.version == "1"
    assert "cannot be checked" in caplog.text


class _WrongModelClient(_StandardServerClient):
    """A standard server that serves other models: asked about ours, it knows nothing."""

    def model_ready(self, model: str, version: str = "", timeout_s: float = 2.0) -> bool:
        return super().model_ready("not_served", version, timeout_s)


def test_a_standard_oip_server_without_the_model_is_refused(
    edge_model: EdgeModel, cloud: str
) -> None:
    with (
        _WrongModelClient(cloud) as client,
        pytest.raises(EdgecutError, match=r"(no ready version|cannot say whether version) 1 "),
    ):
        EdgeNode(edge_model, client, EdgeConfig(version="1"))
