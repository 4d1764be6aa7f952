"""A testbed run: a cloud node in one namespace, an edge node in the other, a shaped link.

:class:`Testbed` builds a :class:`~edgecut.testbed.link.Link`, starts ``edgecut cloud serve``
inside its cloud namespace (waiting for the port it writes), and :meth:`Testbed.run_edge`
runs ``edgecut edge run --json`` inside the edge namespace against it, optionally while a
:class:`~edgecut.testbed.trace.TraceReplay` moves the rate. The nodes are the real CLI
processes, so what is measured is what a deployment runs. :meth:`Testbed.close` (also on an
exception, and on SIGINT/SIGTERM once :func:`signals_raise` is installed) stops both
processes and removes the namespaces; nothing outlives it.

    with Testbed(TestbedConfig(repository=Path("repo"), rate_mbit=5)) as bed:
        summary = bed.run_edge(["--frames", "50", "--adaptive"])
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgecut.testbed.link import Link, TestbedError
from edgecut.testbed.trace import TraceReplay

# Torch threads per node: the machine's cores are shared by the two nodes.
DEFAULT_NODE_THREADS = 1


@dataclass(frozen=True)
class TestbedConfig:
    repository: Path
    rate_mbit: float = 5.0
    delay_ms: float = 0.0
    trace: str | None = None  # packaged trace name or file: the rate follows it
    trace_step_s: float = 1.0
    trace_start_s: float = 0.0
    cloud_threads: int = DEFAULT_NODE_THREADS
    edge_threads: int = DEFAULT_NODE_THREADS
    cloud_args: tuple[str, ...] = ()  # extra `edgecut cloud serve` arguments
    start_timeout_s: float = 180.0
    workdir: Path | None = None  # logs and port files (default: a temporary directory)

    def __post_init__(self) -> None:
        finite = math.isfinite
        if not (finite(self.rate_mbit) and self.rate_mbit > 0):
            raise TestbedError(
                f"testbed: rate must be a finite number > 0 Mbit/s, got {self.rate_mbit}"
            )
        if not (finite(self.delay_ms) and self.delay_ms >= 0):
            raise TestbedError(
                f"testbed: delay must be a finite number >= 0 ms, got {self.delay_ms}"
            )
        if not (finite(self.trace_step_s) and self.trace_step_s > 0):
            raise TestbedError(
                f"testbed: trace step must be a finite number > 0 s, got {self.trace_step_s}"
            )
        if not (finite(self.trace_start_s) and self.trace_start_s >= 0):
            raise TestbedError(
                f"testbed: trace start must be a finite number >= 0 s, got {self.trace_start_s}"
            )


def node_env(threads: int) -> dict[str, str]:
    """A node's environment: this many OpenMP threads, idle ones asleep (the host is shared)."""
    return {**os.environ, "OMP_NUM_THREADS": str(threads), "OMP_WAIT_POLICY": "PASSIVE"}


def stop_process(proc: subprocess.Popen[Any], grace_s: float = 5.0) -> None:
    """SIGTERM, then SIGKILL after ``grace_s``; always reaped."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            proc.kill()
    proc.wait(timeout=30)


@dataclass
class EdgeRun:
    """What ``edgecut edge run`` reported, and the rates the link had meanwhile."""

    returncode: int
    summary: dict[str, Any]
    results: list[dict[str, Any]]
    rates: list[tuple[float, float]]  # (seconds since the edge started, Mbit/s) as applied
    qdisc: str  # `tc -s qdisc` of the shaped end afterwards


@dataclass
class Testbed:
    config: TestbedConfig
    link: Link | None = None
    cloud: subprocess.Popen[str] | None = None
    cloud_port: int = 0
    _tmp: tempfile.TemporaryDirectory[str] | None = None
    _children: list[subprocess.Popen[str]] = field(default_factory=list)

    @property
    def workdir(self) -> Path:
        if self.config.workdir is not None:
            return self.config.workdir
        assert self._tmp is not None
        return Path(self._tmp.name)

    @property
    def cloud_target(self) -> str:
        assert self.link is not None
        return f"{self.link.cloud_address}:{self.cloud_port}"

    def __enter__(self) -> Testbed:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> None:
        cfg = self.config
        if cfg.workdir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="edgecut-testbed-")
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.link = Link.create(cfg.rate_mbit, delay_ms=cfg.delay_ms)
        self._start_cloud()

    def _spawn(self, argv: list[str], side: str, log: Path, threads: int) -> subprocess.Popen[str]:
        assert self.link is not None
        with log.open("w") as out:
            proc = subprocess.Popen(
                self.link.exec_argv(argv, "edge" if side == "edge" else "cloud"),
                stdout=subprocess.PIPE if side == "edge" else out,
                stderr=out,
                text=True,
                env=node_env(threads),
                start_new_session=True,  # a terminal's Ctrl-C reaches the testbed, which stops it
            )
        self._children.append(proc)
        return proc

    def _start_cloud(self) -> None:
        cfg = self.config
        port_file = self.workdir / "cloud.port"
        log = self.workdir / "cloud.log"
        assert self.link is not None
        argv = [
            sys.executable, "-m", "edgecut.cli", "cloud", "serve",
            "--repository", str(cfg.repository), "--host", self.link.cloud_address,
            "--port", "0", "--port-file", str(port_file), "--threads", str(cfg.cloud_threads),
            "--grace-s", "1", *cfg.cloud_args,
        ]  # fmt: skip
        self.cloud = self._spawn(argv, "cloud", log, cfg.cloud_threads)
        deadline = time.monotonic() + cfg.start_timeout_s
        while not port_file.exists():
            if self.cloud.poll() is not None:
                raise TestbedError(
                    f"testbed: the cloud node exited with code {self.cloud.returncode}: "
                    f"{_last_line(log)}"
                )
            if time.monotonic() > deadline:
                raise TestbedError(
                    f"testbed: the cloud node did not start in {cfg.start_timeout_s:g} s "
                    f"(log: {log})"
                )
            time.sleep(0.1)
        self.cloud_port = int(port_file.read_text())

    def run_edge(self, edge_args: Sequence[str] = (), *, timeout_s: float | None = None) -> EdgeRun:
        """Run ``edgecut edge run`` in the edge namespace to its end; TestbedError if it fails
        to report (its log's last line says why) or the cloud node dies meanwhile."""
        cfg = self.config
        assert self.link is not None and self.cloud is not None
        results = self.workdir / f"edge-{len(self._children)}.jsonl"
        log = results.with_suffix(".log")
        argv = [
            sys.executable, "-m", "edgecut.cli", "edge", "run",
            "--repository", str(cfg.repository), "--cloud", self.cloud_target,
            "--threads", str(cfg.edge_threads), "--results", str(results), "--json",
        ]  # fmt: skip
        if self.link.delay_via == "edge":  # no netem in this kernel: the edge waits instead
            argv += ["--emulate-rtt-ms", f"{cfg.delay_ms:g}"]
        argv += list(edge_args)
        with self._replay() as replay:
            edge = self._spawn(argv, "edge", log, cfg.edge_threads)
            try:
                stdout, _ = edge.communicate(timeout=timeout_s)
            finally:
                stop_process(edge)
            rates = list(replay.applied) if replay else [(0.0, self.link.rate_mbit)]
        if self.cloud.poll() is not None:
            raise TestbedError(
                f"testbed: the cloud node died during the run (code {self.cloud.returncode}): "
                f"{_last_line(self.workdir / 'cloud.log')}"
            )
        try:
            summary = json.loads(stdout)
        except json.JSONDecodeError:
            raise TestbedError(
                f"testbed: the edge node exited with code {edge.returncode} without a summary: "
                f"{_last_line(log)}"
            ) from None
        frames = [json.loads(line) for line in results.read_text().splitlines() if line]
        return EdgeRun(edge.returncode, summary, frames, rates, self.link.qdisc_stats())

    @contextmanager
    def _replay(self) -> Iterator[TraceReplay | None]:
        if self.config.trace is None:
            yield None
            return
        from partitioner.pricing.network import load_trace

        assert self.link is not None
        replay = TraceReplay(
            self.link,
            load_trace(self.config.trace),
            step_s=self.config.trace_step_s,
            start_s=self.config.trace_start_s,
        )
        with replay:
            yield replay

    def close(self) -> None:
        """Stop every process started, remove the link; safe to call more than once.

        A second Ctrl-C while this runs is ignored: cleaning up half-way would leave things.
        """
        with _signals_ignored():
            self._close()

    def _close(self) -> None:
        for proc in reversed(self._children):
            stop_process(proc)
        self._children.clear()
        if self.link is not None:
            self.link.close()  # also kills anything else still inside its namespaces
            self.link = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None


def _last_line(log: Path) -> str:
    try:
        lines = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return "(no log)"
    return lines[-1] if lines else "(empty log)"


@contextmanager
def _signals_ignored() -> Iterator[None]:
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    sigs = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in sigs}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@contextmanager
def signals_raise() -> Iterator[None]:
    """SIGTERM (and SIGHUP) raise KeyboardInterrupt like SIGINT, so ``finally`` blocks run."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(signal.Signals(signum).name)

    previous = {sig: signal.signal(sig, interrupt) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
