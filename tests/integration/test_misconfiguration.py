"""Misconfiguration is not an outage: the node commands as a user runs them.

An edge whose configuration cannot work with its cloud (TLS, token, address, model) exits 2
with one line saying what to fix and answers no frame; only a fault after a good start falls
back to local answers (tests/integration/test_fallback.py). A cloud warns on stderr when it
is exposed beyond this machine without TLS or a token and when a token file is readable by
others, names the TLS file that is wrong, and never serves after a SIGTERM during start-up.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from cloud_node.server import CloudConfig, CloudNode
from partitioner.planner import Planner
from partitioner.publish import build_repository, manual_table
from protos import transport

TOKEN = "s3cret"
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE"}
TIMEOUT_S = 300  # a subprocess imports torch: generous on a busy 2-core machine


@dataclass(frozen=True)
class Setup:
    repo: Path  # digits_cnn, two cuts
    other_repo: Path  # the same network under another name, which no cloud serves
    plain: str  # cloud targets
    tls: str  # TLS + bearer token
    mutual: str  # mutual TLS
    token: Path  # mode 600
    wrong_token: Path
    certs: Any


def _secret(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(0o600)
    return path


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory, certs: Any) -> Iterator[Setup]:
    root = tmp_path_factory.mktemp("misconfiguration")
    planner = Planner.create("digits_cnn")
    table = manual_table(planner, [(0.1, 10.0, "pool2"), (10.0, 1000.0, "relu1")])
    build_repository(planner, root / "repo", table=table)
    build_repository(planner, root / "other", table=table, name="digits_b")
    nodes = [
        CloudNode(CloudConfig(repository=root / "repo", port=0, threads=1, **config))
        for config in (
            {},
            {"tls": transport.ServerTLS(certs.server_cert, certs.server_key), "tokens": (TOKEN,)},
            {"tls": transport.ServerTLS(certs.server_cert, certs.server_key, certs.ca)},
        )
    ]
    try:
        plain, tls, mutual = (f"127.0.0.1:{node.start()}" for node in nodes)
        yield Setup(
            root / "repo",
            root / "other",
            plain,
            tls,
            mutual,
            _secret(root / "token", f"{TOKEN}\n"),
            _secret(root / "wrong-token", "guess\n"),
            certs,
        )
    finally:
        for node in nodes:
            node.stop(grace_s=0)


def edgecut(*args: str, timeout: float = TIMEOUT_S) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edgecut.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=ENV,
    )


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# Each case: the edge's arguments and the one line it must print, built from the setup.
CASES: dict[str, Callable[[Setup], tuple[list[str], str]]] = {
    "plaintext against TLS": lambda s: (
        ["--cloud", s.tls, "--token-file", str(s.token)],
        f"cloud {s.tls} speaks TLS but --tls-ca was not given: pass --tls-ca with the CA that "
        "signed its certificate (or --tls to trust the system's roots)",
    ),
    "TLS against plaintext": lambda s: (
        ["--cloud", s.plain, "--tls-ca", str(s.certs.ca)],
        f"cloud {s.plain} speaks plaintext gRPC, not TLS: drop --tls/--tls-ca, or start the "
        "cloud with --tls-cert and --tls-key",
    ),
    "a CA that did not sign the cloud's certificate": lambda s: (
        ["--cloud", s.tls, "--tls-ca", str(s.certs.rogue_ca), "--token-file", str(s.token)],
        f"cloud {s.tls} presents a certificate that --tls-ca {s.certs.rogue_ca} cannot verify "
        "(unable to get local issuer certificate): pass --tls-ca with the CA that signed it",
    ),
    "a certificate for another name": lambda s: (
        [
            "--cloud",
            s.tls,
            "--tls-ca",
            str(s.certs.ca),
            "--tls-server-name",
            "other.test",
            "--token-file",
            str(s.token),
        ],
        f"cloud {s.tls} presents a certificate for another name (it names DNS:localhost, "
        "DNS:edgecut.test, IP:127.0.0.1, not 'other.test'): connect by a name it holds, or "
        "pass --tls-server-name",
    ),
    "no token": lambda s: (
        ["--cloud", s.tls, "--tls-ca", str(s.certs.ca)],
        f"cloud {s.tls} requires a bearer token: give --token-file (missing credentials: send "
        "metadata 'authorization: Bearer <token>')",
    ),
    "a wrong token": lambda s: (
        ["--cloud", s.tls, "--tls-ca", str(s.certs.ca), "--token-file", str(s.wrong_token)],
        f"cloud {s.tls} refused the edge: invalid bearer token: --token-file must hold a token "
        "that the cloud's --token-file lists",
    ),
    "no client certificate for mutual TLS": lambda s: (
        ["--cloud", s.mutual, "--tls-ca", str(s.certs.ca)],
        f"cloud {s.mutual} requires a client certificate (mutual TLS): pass --tls-cert and "
        "--tls-key",
    ),
    "a client key that is not the certificate's": lambda s: (
        [
            "--cloud",
            s.mutual,
            "--tls-ca",
            str(s.certs.ca),
            "--tls-cert",
            str(s.certs.client_cert),
            "--tls-key",
            str(s.certs.server_key),
        ],
        f"--tls-key {s.certs.server_key} does not match --tls-cert {s.certs.client_cert}: the "
        "key is not the certificate's (give the key the certificate was made for)",
    ),
    "a malformed address": lambda s: (
        ["--cloud", "localhost:abc"],
        "cloud address 'localhost:abc': the port 'abc' is not a number in 1..65535",
    ),
    "an address with a scheme": lambda s: (
        ["--cloud", f"http://{s.plain}"],
        f"cloud address 'http://{s.plain}' is not an address: expected HOST:PORT, e.g. "
        "localhost:8001, 10.0.0.5:8001 or [::1]:8001",
    ),
    "a model the cloud does not serve": lambda s: (
        ["--cloud", s.plain, "--repository", str(s.other_repo)],
        f"the cloud at {s.plain} does not serve model 'digits_b' (unknown model 'digits_b': "
        "this server holds digits_cnn): deploy the same repository to both nodes",
    ),
    "nothing at the address": lambda s: (
        ["--cloud", f"127.0.0.1:{(port := _closed_port())}", "--start-timeout-s", "0"],
        f"cloud 127.0.0.1:{port} cannot be reached: connection refused: nothing listens on "
        f"port {port} (tried for 0 s): start the cloud first, or fix --cloud",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_misconfigured_edge_exits_2_with_one_line_and_answers_no_frame(
    setup: Setup, case: str, tmp_path: Path
) -> None:
    args, line = CASES[case](setup)
    results = tmp_path / "results.jsonl"
    done = edgecut(
        "edge", "run", "--repository", str(setup.repo), "--frames", "3", "--threads", "1",
        "--results", str(results), "--json", *args,
    )  # fmt: skip
    assert (done.returncode, done.stderr) == (2, f"edgecut edge: error: {line}\n")
    assert done.stdout == ""  # no summary: no frame was answered, locally or otherwise
    assert not results.exists() or results.read_text() == ""


def test_a_good_start_answers_from_the_cloud_and_warns_of_a_readable_token(
    setup: Setup, tmp_path: Path
) -> None:
    token = tmp_path / "token"
    token.write_text(f"{TOKEN}\n")
    token.chmod(0o644)
    done = edgecut(
        "edge", "run", "--repository", str(setup.repo), "--cloud", setup.tls, "--tls-ca",
        str(setup.certs.ca), "--token-file", str(token), "--frames", "2", "--threads", "1",
        "--json",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stderr == (
        f"edgecut: warning: token file {token} is readable by group or others (mode 0644): "
        f"run `chmod 600 {token}`\n"
    )
    summary = json.loads(done.stdout)
    assert summary["frames"] == summary["cloud_frames"] == 2


# ------------------------------------------------------------------------- cloud


def test_the_cloud_names_the_tls_file_that_is_wrong(setup: Setup, tmp_path: Path) -> None:
    certs = setup.certs
    serve = ["cloud", "serve", "--repository", str(setup.repo), "--port", "0"]
    done = edgecut(*serve, "--tls-cert", str(certs.server_cert), "--tls-key", str(certs.client_key))
    assert (done.returncode, done.stderr) == (
        2,
        f"edgecut cloud: error: --tls-key {certs.client_key} does not match --tls-cert "
        f"{certs.server_cert}: the key is not the certificate's (give the key the certificate "
        "was made for)\n",
    )
    missing = tmp_path / "missing.key"
    done = edgecut(*serve, "--tls-cert", str(certs.server_cert), "--tls-key", str(missing))
    assert (done.returncode, done.stderr) == (
        2,
        f"edgecut cloud: error: --tls-key: {missing} does not exist\n",
    )


def _events(log: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]


def test_an_exposed_cloud_and_a_readable_token_file_are_warned_of(
    setup: Setup, spawn_cloud: Callable[..., Any], tmp_path: Path
) -> None:
    token = tmp_path / "token"
    token.write_text(f"{TOKEN}\n")
    token.chmod(0o640)
    exposed = spawn_cloud(
        ["--repository", str(setup.repo), "--host", "0.0.0.0", "--port", "0", "--token-file",
         str(token)]
    )  # fmt: skip
    warning = (
        "binding 0.0.0.0 (reachable beyond this machine) without TLS: frames, results and "
        "bearer tokens cross the network in clear text; give --tls-cert/--tls-key"
    )
    lines = exposed.log.read_text().splitlines()
    assert f"edgecut: warning: {warning}" in lines
    assert (
        f"edgecut: warning: token file {token} is readable by group or others (mode 0640): "
        f"run `chmod 600 {token}`"
    ) in lines
    logged = [e for e in _events(exposed.log) if e["level"] == "WARNING"]
    assert [(e["event"], e["warning"]) for e in logged] == [("exposed", warning)]

    quiet = spawn_cloud(["--repository", str(setup.repo), "--port", "0"])  # loopback only
    assert "warning" not in quiet.log.read_text().lower()
    assert not [e for e in _events(quiet.log) if e["level"] == "WARNING"]


# A cloud whose tails load until the test releases them: Tail.load waits for a file.
GATED_CLOUD = """
import sys, time
from pathlib import Path
from cloud_node import models
from edgecut import cli

loading, release = Path(sys.argv[1]), Path(sys.argv[2])
load = models.Tail.load

def gated_load(self, *args, **kwargs):
    loading.touch()
    deadline = time.monotonic() + 600
    while not release.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    return load(self, *args, **kwargs)

models.Tail.load = gated_load
sys.exit(cli.main(sys.argv[3:]))
"""


def _wait_for(what: str, done: Callable[[], bool], proc: subprocess.Popen[str], log: Path) -> None:
    deadline = time.monotonic() + TIMEOUT_S
    while not done():
        assert proc.poll() is None or done(), f"exited {proc.returncode}:\n{log.read_text()}"
        assert time.monotonic() < deadline, f"no {what} in {TIMEOUT_S} s:\n{log.read_text()}"
        time.sleep(0.05)


def _health(port: int) -> Any:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        return stub.Check(health_pb2.HealthCheckRequest(), timeout=30).status


def test_sigterm_while_tails_load_stops_the_cloud_for_good(setup: Setup, tmp_path: Path) -> None:
    loading, release, port_file = tmp_path / "loading", tmp_path / "release", tmp_path / "port"
    log = tmp_path / "cloud.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-c", GATED_CLOUD, str(loading), str(release), "cloud", "serve",
             "--repository", str(setup.repo), "--port", "0", "--port-file", str(port_file),
             "--threads", "1"],
            stdout=out, stderr=subprocess.STDOUT, text=True, env=ENV,
        )  # fmt: skip
    try:
        _wait_for("tail loading", loading.exists, proc, log)
        (bound,) = [e["port"] for e in _events(log) if e["event"] == "loading"]
        assert _health(bound) == health_pb2.HealthCheckResponse.NOT_SERVING

        proc.send_signal(signal.SIGTERM)
        _wait_for("stop", lambda: any(e["event"] == "stopped" for e in _events(log)), proc, log)
        with pytest.raises(grpc.RpcError) as refused:
            _health(bound)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        release.touch()  # the tail that was loading finishes; the node must not serve now
        assert proc.wait(timeout=TIMEOUT_S) == 0, log.read_text()
    finally:
        release.touch()
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=60)
    events = [e["event"] for e in _events(log)]
    assert "serving" not in events and events[-1] in ("stopped", "start_cancelled")
    assert events.count("start_cancelled") == 1 and events.count("stopped") == 1
    assert not port_file.exists()
    assert "model_loaded" not in events[events.index("start_cancelled") + 1 :]
