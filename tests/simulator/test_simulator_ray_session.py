"""Which Ray a run uses: a local one by default, whatever cluster the machine knows of; a
cluster only when asked, and then as it is (its own CPUs), or one line saying it is dead.

The decision is tested with ``ray.init`` replaced; then ``edgecut simulate`` and ``edgecut
sweep`` run for real (subprocesses) against an address file left by a dead cluster and
against a cluster started by ``ray start --head`` for this module. Ray's temp dir (where
``ray start`` writes ``ray_current_cluster``) is a private one (``RAY_TMPDIR``), so
nothing here reads or writes the machine's /tmp/ray.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from partitioner.errors import EdgecutError
from simulator import ray_transport

ROOT = Path(__file__).resolve().parents[2]
SCENARIO = """\
name: tiny
seed: 3
duration_s: 2
deadline_ms: 100
policy: cloud-only
fleet:
  - {name: cams, count: 4, fps: 5, model: digits_cnn, device: rpi4,
     network: {mbps: 20, rtt_ms: 5}}
cloud:
  - {name: dc, servers: 1}
"""
CLUSTER_CPUS = 3  # not this machine's count: a run that joined the cluster shows it


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def ray_tmp() -> Iterator[Path]:
    """A private Ray temp dir, short: Ray's unix sockets live below it, and their paths
    must fit 107 bytes."""
    path = Path(tempfile.mkdtemp(prefix="rs", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def write_address_file(ray_tmp: Path, address: str) -> Path:
    path = ray_tmp / "ray" / "ray_current_cluster"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(address)
    return path


# ------------------------------------------------------------------------ the decision


@pytest.fixture
def fake_ray(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[dict[str, Any]]:
    """ray.init recorded instead of run, Ray's temp dir private, RAY_ADDRESS unset."""
    import ray

    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", lambda **options: calls.append(options))
    monkeypatch.setattr(ray, "shutdown", lambda: None)
    monkeypatch.setenv("RAY_TMPDIR", str(tmp_path))
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    return calls


def test_cluster_address_asks_the_flag_then_ray_address(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    assert ray_transport.cluster_address(None) is None
    assert ray_transport.cluster_address("local") is None
    assert ray_transport.cluster_address("auto") == ("auto", "--address auto")
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.7:6379")
    assert ray_transport.cluster_address(None) == ("10.0.0.7:6379", "RAY_ADDRESS=10.0.0.7:6379")
    assert ray_transport.cluster_address("auto") == ("auto", "--address auto")
    monkeypatch.setenv("RAY_ADDRESS", "local")
    assert ray_transport.cluster_address(None) is None


def test_by_default_a_local_ray_starts_whatever_the_address_file_says(
    fake_ray: list[dict[str, Any]], tmp_path: Path
) -> None:
    write_address_file(tmp_path, f"127.0.0.1:{free_port()}")  # a dead cluster's
    with ray_transport.ray_session(num_cpus=3):
        pass
    (options,) = fake_ray
    assert options["address"] == "local" and options["num_cpus"] == 3
    assert options["object_store_memory"] == ray_transport.LOCAL_OBJECT_STORE_BYTES


def test_joining_a_cluster_passes_no_resources(
    fake_ray: list[dict[str, Any]], tmp_path: Path
) -> None:
    with socket.socket() as gcs:  # something that answers where the file points
        gcs.bind(("", 0))
        gcs.listen()
        write_address_file(tmp_path, f"127.0.0.1:{gcs.getsockname()[1]}")
        with ray_transport.ray_session("auto", num_cpus=3):
            pass
    (options,) = fake_ray
    assert options["address"] == "auto"
    assert not {"num_cpus", "num_gpus", "object_store_memory", "resources"} & set(options)


def test_a_dead_cluster_is_named_in_one_line_at_once(
    fake_ray: list[dict[str, Any]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = free_port()
    path = write_address_file(tmp_path, f"127.0.0.1:{port}")
    start = time.monotonic()
    with pytest.raises(EdgecutError) as info, ray_transport.ray_session("auto"):
        pass
    message = str(info.value)
    assert f":{port} does not answer" in message and str(path) in message, message
    assert "--address auto" in message and "\n" not in message
    assert time.monotonic() - start < ray_transport.PROBE_TIMEOUT_S + 5
    monkeypatch.setenv("RAY_ADDRESS", f"127.0.0.1:{port}")
    dead = f"RAY_ADDRESS=127.0.0.1:{port}: .* does not answer"
    with pytest.raises(EdgecutError, match=dead), ray_transport.ray_session():
        pass
    assert fake_ray == []  # ray.init was never asked


# ------------------------------------------------------------------------ for real


def edgecut(ray_tmp: Path, scenario: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "RAY_TMPDIR": str(ray_tmp)}
    env.pop("RAY_ADDRESS", None)
    command = [sys.executable, "-m", "edgecut.cli", argv[0], str(scenario), *argv[1:]]
    return subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT)


def run_json(ray_tmp: Path, scenario: Path, *argv: str) -> dict[str, Any]:
    out = edgecut(ray_tmp, scenario, *argv, "--json")
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout)


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("scenario") / "tiny.yaml"
    path.write_text(SCENARIO)
    return path


def test_simulate_and_sweep_run_despite_a_dead_clusters_address_file(
    scenario: Path, ray_tmp: Path
) -> None:
    write_address_file(ray_tmp, f"127.0.0.1:{free_port()}")
    out = run_json(ray_tmp, scenario, "simulate")
    assert out["transport"] == "ray" and out["frames"] == 40
    data = run_json(
        ray_tmp, scenario, "sweep", "--cuts", "edge-only,cloud-only", "--bandwidths", "5"
    )
    assert len(data["cells"]) == 2
    # Asked to join it: one line naming the dead address, not minutes of Ray retrying.
    failed = edgecut(ray_tmp, scenario, "simulate", "--address", "auto")
    assert failed.returncode == 2
    assert "does not answer" in failed.stderr and "ray_current_cluster" in failed.stderr


@pytest.fixture(scope="module")
def running_cluster() -> Iterator[Path]:
    """``ray start --head --block`` in its own process group and Ray temp dir; the group
    (Ray's processes stay in it) is stopped at the end."""
    ray_tmp = Path(tempfile.mkdtemp(prefix="rs", dir="/tmp"))  # short, as above
    ray_cli = Path(sys.executable).with_name("ray")
    command = [
        str(ray_cli), "start", "--head", "--block", f"--num-cpus={CLUSTER_CPUS}",
        f"--port={free_port()}", f"--ray-client-server-port={free_port()}",
        "--include-dashboard=false", "--disable-usage-stats",
        f"--object-store-memory={100 * 1024**2}",
    ]  # fmt: skip
    env = {**os.environ, "RAY_TMPDIR": str(ray_tmp)}
    env.pop("RAY_ADDRESS", None)
    log = (ray_tmp / "ray-start.log").open("w")
    head = subprocess.Popen(
        command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        address_file = ray_tmp / "ray" / "ray_current_cluster"
        deadline = time.monotonic() + 180
        while not address_file.exists():
            if head.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"ray start failed: {(ray_tmp / 'ray-start.log').read_text()[-2000:]}")
            time.sleep(0.5)
        yield ray_tmp
    finally:
        os.killpg(head.pid, signal.SIGTERM)
        try:
            head.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
            head.wait()
        log.close()
        shutil.rmtree(ray_tmp, ignore_errors=True)


def test_a_running_cluster_is_joined_only_when_asked(running_cluster: Path, scenario: Path) -> None:
    joined = run_json(running_cluster, scenario, "simulate", "--address", "auto")
    assert joined["transport"] == "ray" and joined["shards"] == CLUSTER_CPUS  # its CPUs
    local = run_json(running_cluster, scenario, "simulate")
    assert local["transport"] == "ray" and local["shards"] == min(os.cpu_count() or 1, 4)
    for key in ("wall_s", "frames_per_s", "compile_s", "shards"):
        joined.pop(key), local.pop(key)
    assert joined == local
    argv = ["sweep", "--address", "auto", "--cuts", "edge-only,cloud-only", "--bandwidths", "5"]
    assert len(run_json(running_cluster, scenario, *argv)["cells"]) == 2
