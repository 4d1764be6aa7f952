"""A bulk transfer over a testbed link: how long the shaped uplink takes to move N bytes.

A sink in the cloud namespace reads one TCP connection to its end and answers with the byte
count; a sender in the edge namespace connects, writes N bytes, half-closes and waits for that
answer. The sender's clock (connect to answer) is the transfer time: N bytes through the tbf
plus a round trip. Run as ``python -m edgecut.testbed.probe sink ADDRESS PORT_FILE`` and
``... send ADDRESS PORT NBYTES``; :func:`measure_transfer` does both.
"""

from __future__ import annotations

import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from edgecut.testbed.link import Link, TestbedError

CHUNK = 64 * 1024


def sink(address: str, port_file: Path) -> None:
    with socket.create_server((address, 0)) as server:
        tmp = port_file.with_suffix(".tmp")
        tmp.write_text(str(server.getsockname()[1]))
        tmp.rename(port_file)  # atomic: the reader never sees a half-written port
        conn, _ = server.accept()
        with conn:
            received = 0
            while chunk := conn.recv(CHUNK):
                received += len(chunk)
            conn.sendall(struct.pack("!Q", received))


def send(address: str, port: int, nbytes: int) -> float:
    """Seconds from connect to the sink's answer, having sent ``nbytes``."""
    payload = bytes(CHUNK)
    start = time.monotonic()
    with socket.create_connection((address, port), timeout=120) as conn:
        left = nbytes
        while left > 0:
            conn.sendall(payload[: min(left, CHUNK)])
            left -= min(left, CHUNK)
        conn.shutdown(socket.SHUT_WR)
        answer = conn.recv(8)
    elapsed = time.monotonic() - start
    (received,) = struct.unpack("!Q", answer)
    if received != nbytes:
        raise RuntimeError(f"sink received {received} bytes, sent {nbytes}")
    return elapsed


def measure_transfer(link: Link, nbytes: int, *, timeout_s: float = 120.0) -> float:
    """Seconds the link takes to move ``nbytes`` from edge to cloud (both ends as processes)."""
    with tempfile.TemporaryDirectory(prefix="edgecut-probe-") as tmp:
        port_file = Path(tmp) / "port"
        module = [sys.executable, "-m", "edgecut.testbed.probe"]
        sink_proc = subprocess.Popen(
            link.exec_argv([*module, "sink", link.cloud_address, str(port_file)], "cloud"),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            deadline = time.monotonic() + timeout_s
            while not port_file.exists():
                if sink_proc.poll() is not None or time.monotonic() > deadline:
                    _, err = (
                        sink_proc.communicate(timeout=5)
                        if sink_proc.poll() is not None
                        else ("", "")
                    )
                    raise TestbedError(f"transfer sink did not start: {err.strip()[-500:]}")
                time.sleep(0.02)
            sender = subprocess.run(
                link.exec_argv(
                    [*module, "send", link.cloud_address, port_file.read_text(), str(nbytes)],
                    "edge",
                ),
                capture_output=True,
                text=True,
                timeout=timeout_s,
            )
            if sender.returncode != 0:
                raise TestbedError(f"transfer sender failed: {sender.stderr.strip()[-500:]}")
            return float(sender.stdout.strip())
        finally:
            if sink_proc.poll() is None:
                sink_proc.kill()
            sink_proc.wait(timeout=10)


def main(argv: list[str]) -> None:
    if argv[:1] == ["sink"] and len(argv) == 3:
        sink(argv[1], Path(argv[2]))
    elif argv[:1] == ["send"] and len(argv) == 4:
        print(f"{send(argv[1], int(argv[2]), int(argv[3])):.6f}")
    else:
        raise SystemExit("usage: probe sink ADDRESS PORT_FILE | probe send ADDRESS PORT NBYTES")


if __name__ == "__main__":
    main(sys.argv[1:])
