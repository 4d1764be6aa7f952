"""Shared fixtures: captured zoo models cached per session (capture takes seconds), and
test certificates (a CA, server and client leaves, and a rogue CA nobody trusts)."""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

# Tests share two cores with servers, clients and each other. A multi-threaded
# OpenMP pool that spin-waits on a busy machine runs ~50x slower (resnet18 at
# 32x32: 1.2 s per forward with 2 threads under load, 23 ms with 1), so every test
# process runs torch on one thread. Benchmarks set their own thread counts.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def pytest_configure(config: pytest.Config) -> None:
    import torch

    torch.set_num_threads(1)


@functools.cache
def _captured(name: str, shape: tuple[int, ...] | None):
    import partitioner.model.zoo as zoo
    from partitioner.model.capture import capture

    entry = zoo.MODELS.get(name)
    model = zoo.create_model(name)
    input_shape = shape or entry.test_input_shape
    import torch

    x = torch.randn(input_shape, generator=torch.Generator().manual_seed(0))
    return model, capture(model, x, name=name)


@pytest.fixture(scope="session")
def captured_zoo():
    """captured_zoo(name, shape=None) -> (model, CapturedModel) at the test input shape."""

    def get(name: str, shape: tuple[int, ...] | None = None):
        return _captured(name, tuple(shape) if shape else None)

    return get


# ---------------------------------------------------------------- certificates


@dataclass(frozen=True)
class Certs:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    rogue_ca: Path  # a CA nobody trusts, and a client certificate it signed
    rogue_client_cert: Path
    rogue_client_key: Path


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def _make_ca(directory: Path, name: str) -> None:
    _openssl(
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
        "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.pem", "-days", "2",
        "-subj", f"/CN=edgecut test {name}",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        cwd=directory,
    )  # fmt: skip


def _make_leaf(directory: Path, name: str, ca: str, extensions: str, serial: int) -> None:
    (directory / f"{name}.ext").write_text(extensions)
    _openssl(
        "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN=edgecut test {name}",
        cwd=directory,
    )  # fmt: skip
    _openssl(
        "x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key",
        "-set_serial", str(serial), "-days", "2", "-out", f"{name}.pem",
        "-extfile", f"{name}.ext",
        cwd=directory,
    )  # fmt: skip


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is needed to create test certificates")
    d = tmp_path_factory.mktemp("certs")
    _make_ca(d, "ca")
    _make_ca(d, "rogue")
    server_ext = (
        "subjectAltName=DNS:localhost,DNS:edgecut.test,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n"
    )
    _make_leaf(d, "server", "ca", server_ext, serial=2)
    _make_leaf(d, "client", "ca", "extendedKeyUsage=clientAuth\n", serial=3)
    _make_leaf(d, "rogue_client", "rogue", "extendedKeyUsage=clientAuth\n", serial=4)
    return Certs(
        ca=d / "ca.pem",
        server_cert=d / "server.pem",
        server_key=d / "server.key",
        client_cert=d / "client.pem",
        client_key=d / "client.key",
        rogue_ca=d / "rogue.pem",
        rogue_client_cert=d / "rogue_client.pem",
        rogue_client_key=d / "rogue_client.key",
    )
