"""The testbed (edgecut/testbed): a kernel-shaped link moves bytes at its rate, a trace moves
the rate, and nothing is left behind after a normal run, a failure midway or a SIGINT.

Needs root and iproute2 (skipped with the reason otherwise); every namespace and interface
is named after this process's pid, so the checks see only what these tests made.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edgecut.testbed.link import PREFIX, Link, TestbedError, leftovers, namespace_pids
from edgecut.testbed.probe import measure_transfer
from edgecut.testbed.run import Testbed, TestbedConfig
from edgecut.testbed.trace import TraceReplay
from partitioner.pricing.network import load_trace

from .conftest import Repo

pytestmark = pytest.mark.root

if os.geteuid() != 0:
    pytest.skip("needs root to create network namespaces and tc qdiscs", allow_module_level=True)
if shutil.which("ip") is None or shutil.which("tc") is None:
    pytest.skip("needs the ip and tc commands (iproute2)", allow_module_level=True)


def _ours(pid: int = os.getpid()) -> tuple[list[str], list[str]]:
    """Namespaces and root interfaces left by testbeds of process ``pid``."""
    tag = f"{pid}x"
    namespaces, links = leftovers()
    return (
        [ns for ns in namespaces if ns.startswith(f"{PREFIX}-{tag}")],
        [ln for ln in links if ln.startswith(f"{PREFIX}{tag}")],
    )


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_a_5_mbit_link_moves_1_mb_in_1_6_s() -> None:
    with Link.create(5.0) as link:
        seconds = measure_transfer(link, 1_000_000)
        stats = link.qdisc_stats()
    print(f"1 MB over 5 Mbit/s: {seconds:.3f} s\n{stats}")
    assert "tbf" in stats and "rate 5Mbit" in stats
    # 8 Mbit at 5 Mbit/s is 1.6 s; TCP/IP and Ethernet headers add ~4.5% on the wire.
    assert 1.6 * 0.85 <= seconds <= 1.6 * 1.15
    assert _ours() == ([], [])


def test_trace_replay_changes_the_rate(tmp_path: Path) -> None:
    trace_file = tmp_path / "steps.txt"
    trace_file.write_text("0 2\n4 16\n")  # [seconds, Mbit/s]: 2 Mbit/s for 4 s, then 16
    with Link.create(100.0) as link, TraceReplay(link, load_trace(str(trace_file)), step_s=4.0):
        assert "rate 2Mbit" in link.qdisc_stats()
        slow_s = measure_transfer(link, 200_000)  # 0.8 s at 2 Mbit/s
        replay_start = time.monotonic() - slow_s
        while "rate 16Mbit" not in link.qdisc_stats():
            assert time.monotonic() - replay_start < 30, link.qdisc_stats()
            time.sleep(0.1)
        fast_s = measure_transfer(link, 200_000)  # 0.1 s at 16 Mbit/s
    print(f"200 KB at the trace's 2 Mbit/s: {slow_s:.3f} s, at its 16 Mbit/s: {fast_s:.3f} s")
    assert 0.8 * 0.85 <= slow_s <= 0.8 * 1.3
    assert slow_s > 4 * fast_s
    assert _ours() == ([], [])


def test_a_run_leaves_nothing_behind(resnet_repo: Repo) -> None:
    with Testbed(TestbedConfig(repository=resnet_repo.root, rate_mbit=20.0)) as bed:
        assert bed.link is not None and bed.cloud is not None
        namespaces = [bed.link.cloud_ns, bed.link.edge_ns]
        run = bed.run_edge(["--frames", "3"])
        cloud_pid = bed.cloud.pid
        assert namespace_pids(bed.link.cloud_ns) == [cloud_pid]
    assert run.returncode == 0, run.summary
    assert run.summary["frames"] == 3 and run.summary["cloud_frames"] == 3
    assert len(run.results) == 3 and run.summary["bytes_sent"] > 0
    assert "Sent" in run.qdisc and "tbf" in run.qdisc
    assert not _alive(cloud_pid)
    assert not any(ns in leftovers()[0] for ns in namespaces)
    assert _ours() == ([], [])


def test_a_failure_midway_leaves_nothing_behind(resnet_repo: Repo) -> None:
    pids: list[int] = []
    config = TestbedConfig(repository=resnet_repo.root, rate_mbit=20.0)
    with pytest.raises(TestbedError, match="cloud node died"), Testbed(config) as bed:
        assert bed.link is not None and bed.cloud is not None
        pids = namespace_pids(bed.link.cloud_ns)
        bed.cloud.kill()  # a child dies midway; the edge (refusing its arguments) too
        bed.run_edge(["--fps", "-1"])
    assert pids and not any(_alive(p) for p in pids)
    assert _ours() == ([], [])

    # A node that fails to start: the link built before it is removed all the same.
    config = TestbedConfig(repository=resnet_repo.root, cloud_args=("--max-batch", "0"))
    with pytest.raises(TestbedError, match="cloud node exited with code 2"):
        Testbed(config).__enter__()
    assert _ours() == ([], [])


def test_sigint_to_a_testbed_leaves_nothing_behind(resnet_repo: Repo, tmp_path: Path) -> None:
    log = tmp_path / "testbed.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "edgecut.cli", "testbed", "run",
             "--repository", str(resnet_repo.root), "--rate-mbit", "20",
             "--frames", "100000", "--fps", "5"],
            stdout=out, stderr=subprocess.STDOUT,
            env={**os.environ, "OMP_NUM_THREADS": "1"},
        )  # fmt: skip
    try:
        pids: list[int] = []
        deadline = time.monotonic() + 180
        while len(pids) < 2:  # the cloud node and the edge node, each in its namespace
            assert proc.poll() is None, log.read_text()[-2000:]
            assert time.monotonic() < deadline, log.read_text()[-2000:]
            time.sleep(0.2)
            pids = [p for ns in _ours(proc.pid)[0] for p in namespace_pids(ns)]
        time.sleep(1.0)  # frames flowing
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 130, log.read_text()[-2000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert "interrupted" in log.read_text()
    assert not any(_alive(p) for p in pids)
    assert _ours(proc.pid) == ([], [])


def test_cleanup_removes_what_a_killed_testbed_left(tmp_path: Path) -> None:
    # A process builds a link, starts a process inside it, and is killed with SIGKILL.
    script = (
        "import subprocess, sys, time\n"
        "from edgecut.testbed.link import Link\n"
        "link = Link.create(5.0, edge_in_root=True)\n"
        "held = subprocess.Popen(link.exec_argv(['sleep', '600'], 'cloud'))\n"
        "print(held.pid, flush=True)\n"
        "time.sleep(600)\n"
    )
    owner = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert owner.stdout is not None
    held_pid = int(owner.stdout.readline())
    own = Link.create(5.0)  # a running testbed's link: cleanup must spare it
    try:
        owner.kill()
        owner.wait(timeout=10)
        left = _ours(owner.pid)
        assert len(left[0]) == 1 and len(left[1]) == 1
        result = subprocess.run(
            [sys.executable, "-m", "edgecut.cli", "testbed", "cleanup", "--json"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        removed = json.loads(result.stdout)
        assert left[0][0] in removed["namespaces"] and left[1][0] in removed["links"]
        assert not _alive(held_pid)  # killed by the cleanup
        assert _ours(owner.pid) == ([], [])
        assert own.cloud_ns in leftovers()[0]
    finally:
        own.close()
    assert _ours() == ([], [])
