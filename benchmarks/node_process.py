"""A cloud node in its own process, as the fuzz and soak benchmarks watch it.

``NodeProcess`` runs ``edgecut cloud serve`` on a loopback port 0 (read back from its port file,
written once every tail is loaded) with its log in a file; ``stats()`` reads what the kernel
says of it: resident and peak memory and threads from /proc/PID/status, open descriptors from
/proc/PID/fd.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ProcessStats:
    rss_mb: float  # VmRSS: resident now
    hwm_mb: float  # VmHWM: the peak resident since the process started
    threads: int
    fds: int


def process_stats(pid: int) -> ProcessStats:
    status = Path(f"/proc/{pid}/status").read_text().splitlines()
    fields = dict(line.split(":", 1) for line in status if ":" in line)
    return ProcessStats(
        rss_mb=int(fields["VmRSS"].split()[0]) / 1024,
        hwm_mb=int(fields["VmHWM"].split()[0]) / 1024,
        threads=int(fields["Threads"]),
        fds=len(os.listdir(f"/proc/{pid}/fd")),
    )


class NodeProcess:
    """``edgecut cloud serve --repository ROOT --port 0 ...`` in a subprocess."""

    def __init__(
        self, repository: Path, workdir: Path, *, threads: int = 1, args: tuple[str, ...] = ()
    ) -> None:
        port_file = workdir / f"port-{time.monotonic_ns()}"
        self.log = port_file.with_suffix(".log")
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "OMP_WAIT_POLICY": "PASSIVE"}
        with self.log.open("w") as log:
            self.proc = subprocess.Popen(
                [
                    sys.executable, "-m", "edgecut.cli", "cloud", "serve",
                    "--repository", str(repository), "--port", "0",
                    "--port-file", str(port_file), "--threads", str(threads),
                    "--log-level", "WARNING", *args,
                ],
                stdout=log, stderr=subprocess.STDOUT, env=env,
            )  # fmt: skip
        deadline = time.monotonic() + 300
        while not port_file.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise SystemExit(f"the cloud node did not start:\n{self.log.read_text()[-3000:]}")
            time.sleep(0.1)
        self.port = int(port_file.read_text())

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def stats(self) -> ProcessStats:
        return process_stats(self.proc.pid)

    def stop(self) -> int:
        """SIGTERM (graceful), SIGKILL after 30 s; the exit code."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        return self.proc.wait(timeout=30)

    def __enter__(self) -> NodeProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
