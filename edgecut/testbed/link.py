"""A kernel-shaped link between an edge and a cloud on one machine (needs root).

:class:`Link` is two network namespaces, ``<name>-edge`` and ``<name>-cloud``, joined by a
veth pair created directly inside them (nothing is ever left in the root namespace). The
edge-to-cloud direction is shaped on the edge end's egress with ``tc qdisc ... tbf``: a real
kernel token bucket, so TCP, gRPC and the node processes meet the bandwidth as they would on a
real uplink. With ``edge_in_root=True`` the edge end stays in the caller's namespace instead
(``<prefix><tag>e``), for a test or benchmark that runs the edge node in its own process.

A fixed delay is added with ``netem`` when the kernel has it: ``netem delay`` as the root
qdisc of the edge end and the tbf as its only child, so a packet is first held for the delay,
then paced at the rate (the way ``tc-netem(8)`` nests a rate limiter). Kernels without netem
(this machine: only tbf, htb and pfifo exist) cannot delay in the kernel at all; the link
then reports ``delay_via == "edge"`` and the caller adds the delay in user space on the edge
(``edgecut edge run --emulate-rtt-ms``, a fixed wait per request before it is sent).

Everything a link makes has a name starting with :data:`PREFIX` and holding its process's
pid; :meth:`Link.close` removes what this link made (killing any process still inside its
namespaces first), and :func:`cleanup` removes what processes that no longer run left behind
(after a ``kill -9``), sparing the testbeds still running.

    with Link.create(rate_mbit=5, delay_ms=20) as link:
        link.exec(["python", "-m", "edgecut.cli", "cloud", "serve", ...], side="cloud")
        link.set_rate(1.5)
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import count
from typing import Literal

from partitioner.errors import EdgecutError

PREFIX = "ectb"  # every namespace and interface a testbed makes starts with this
EDGE_ADDRESS, CLOUD_ADDRESS = "10.78.0.1", "10.78.0.2"  # inside the namespaces: no clash
# tbf's bucket: two full-size packets, so a frame's bytes really wait for the rate (a larger
# burst lets small requests through at line rate); a queue that holds a second of data
# before dropping (a drop would be a TCP retransmission, not a slower link).
BURST_BYTES = 2 * 1514
QUEUE_LATENCY_MS = 1000
MIN_RATE_MBIT = 0.008  # tbf needs a positive rate; a trace's empty ms become this trickle

Side = Literal["edge", "cloud"]

_serial = count()


class TestbedError(EdgecutError):
    """A testbed cannot be built here (not root, no iproute2, a command failed)."""


def check_root() -> None:
    """TestbedError (one line) unless this process is root and has ``ip`` and ``tc``."""
    if os.geteuid() != 0:
        raise TestbedError(
            "edgecut testbed needs root: network namespaces and tc qdiscs are privileged "
            f"(running as uid {os.geteuid()}); run it with sudo"
        )
    missing = [tool for tool in ("ip", "tc") if shutil.which(tool) is None]
    if missing:
        raise TestbedError(
            f"edgecut testbed needs the {' and '.join(missing)} command(s): install iproute2"
        )


def run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run an ``ip``/``tc`` command; a failure is a TestbedError naming the command."""
    proc = subprocess.run(args, capture_output=True, text=True, timeout=30)
    if check and proc.returncode != 0:
        raise TestbedError(f"`{' '.join(args)}` failed: {proc.stderr.strip() or proc.returncode}")
    return proc


def new_tag() -> str:
    """``<pid>x<n>``: whose it is (so cleanup spares the living) and which of its links."""
    return f"{os.getpid()}x{next(_serial) % 100}"  # interface names stay within 15 characters


# The only names a testbed makes: namespaces ectb-<pid>x<n>-edge|cloud|probe and interfaces
# ectb<pid>x<n>e|c. Anything else with the prefix is someone else's and is never touched.
_NAMESPACE = re.compile(rf"{PREFIX}-(\d+)x\d+-(edge|cloud|probe)")
_INTERFACE = re.compile(rf"{PREFIX}(\d+)x\d+[ec]")


def owner_pid(name: str) -> int | None:
    """The pid in a testbed's name (``ectb-1234x0-edge``, ``ectb1234x0e``); None for a name
    no testbed makes."""
    match = _NAMESPACE.fullmatch(name) or _INTERFACE.fullmatch(name)
    return int(match.group(1)) if match else None


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def has_netem() -> bool:
    """Whether this kernel has the netem qdisc (probed on a throwaway namespace)."""
    ns = f"{PREFIX}-{new_tag()}-probe"
    run("ip", "netns", "add", ns)
    try:
        probe = run("tc", "-n", ns, "qdisc", "add", "dev", "lo", "root", "netem", "delay", "1ms",
                    check=False)  # fmt: skip
        return probe.returncode == 0
    finally:
        run("ip", "netns", "del", ns, check=False)


def tbf_args(rate_mbit: float) -> list[str]:
    rate_kbit = max(rate_mbit, MIN_RATE_MBIT) * 1000
    return ["tbf", "rate", f"{rate_kbit:.3f}kbit", "burst", str(BURST_BYTES),
            "latency", f"{QUEUE_LATENCY_MS}ms"]  # fmt: skip


@dataclass
class Link:
    """Two namespaces joined by a shaped veth pair; see the module doc."""

    name: str  # namespaces are <name>-edge and <name>-cloud
    edge_if: str
    cloud_if: str
    rate_mbit: float
    delay_ms: float
    delay_via: str  # "netem" (in the kernel), "edge" (the caller adds it), "none"
    edge_in_root: bool = False
    _made: list[tuple[str, str]] = field(default_factory=list)  # ("netns"|"link", name)

    @classmethod
    def create(cls, rate_mbit: float, *, delay_ms: float = 0.0, edge_in_root: bool = False) -> Link:
        """Build and shape the link (TestbedError if that fails; what was made is removed)."""
        check_root()
        if not (math.isfinite(rate_mbit) and rate_mbit > 0):
            raise TestbedError(f"link rate must be a finite number > 0 Mbit/s, got {rate_mbit}")
        if not (math.isfinite(delay_ms) and delay_ms >= 0):
            raise TestbedError(f"link delay must be a finite number >= 0 ms, got {delay_ms}")
        tag = new_tag()
        delay_via = "none" if delay_ms == 0 else ("netem" if has_netem() else "edge")
        link = cls(
            name=f"{PREFIX}-{tag}",
            edge_if=f"{PREFIX}{tag}e",  # interface names: at most 15 characters
            cloud_if=f"{PREFIX}{tag}c",
            rate_mbit=rate_mbit,
            delay_ms=delay_ms,
            delay_via=delay_via,
            edge_in_root=edge_in_root,
        )
        try:
            link._build()
        except BaseException:
            link.close()
            raise
        return link

    @property
    def edge_ns(self) -> str | None:
        return None if self.edge_in_root else f"{self.name}-edge"

    @property
    def cloud_ns(self) -> str:
        return f"{self.name}-cloud"

    @property
    def edge_address(self) -> str:
        return self._subnet_address(1) if self.edge_in_root else EDGE_ADDRESS

    @property
    def cloud_address(self) -> str:
        return self._subnet_address(2) if self.edge_in_root else CLOUD_ADDRESS

    def _subnet_address(self, host: int) -> str:
        # The edge end shares the caller's routing table: a /30 of its own per process.
        return f"10.79.{os.getpid() % 250}.{4 * (next_index(self.name) % 60) + host}"

    def _ns_cmd(self, ns: str | None, *args: str) -> list[str]:
        return [*(["ip", "netns", "exec", ns] if ns else []), *args]

    def _build(self) -> None:
        cloud_ns = self.cloud_ns
        run("ip", "netns", "add", cloud_ns)
        self._made.append(("netns", cloud_ns))
        if self.edge_ns is not None:
            run("ip", "netns", "add", self.edge_ns)
            self._made.append(("netns", self.edge_ns))
            edge_where = ["netns", self.edge_ns]
        else:
            in_use = run("ip", "-o", "addr").stdout
            prefix = self.edge_address.rsplit(".", 1)[0] + "."
            if f" {self.edge_address}/" in in_use or f" {self.cloud_address}/" in in_use:
                raise TestbedError(f"addresses {prefix}x are in use on this host")
            edge_where = []
        # Created inside the namespaces: a crash between steps leaves nothing in the root one
        # (except the edge end when it belongs there, which close() and cleanup() delete).
        run("ip", "link", "add", self.edge_if, *edge_where, "type", "veth",
            "peer", "name", self.cloud_if, "netns", cloud_ns)  # fmt: skip
        if self.edge_ns is None:
            self._made.append(("link", self.edge_if))
        for ns, dev, address in (
            (self.edge_ns, self.edge_if, self.edge_address),
            (cloud_ns, self.cloud_if, self.cloud_address),
        ):
            run(*self._ns_cmd(ns, "ip", "addr", "add", f"{address}/30", "dev", dev))
            run(*self._ns_cmd(ns, "ip", "link", "set", dev, "up"))
            if ns is not None:
                run(*self._ns_cmd(ns, "ip", "link", "set", "lo", "up"))
        self._shape("add")

    def _tc(self, *args: str) -> None:
        run(*self._ns_cmd(self.edge_ns, "tc", *args))

    def _shape(self, verb: str) -> None:
        dev = ["dev", self.edge_if]
        if self.delay_via == "netem":
            if verb == "add":
                self._tc("qdisc", "add", *dev, "root", "handle", "1:", "netem",
                         "delay", f"{self.delay_ms}ms")  # fmt: skip
            self._tc("qdisc", verb, *dev, "parent", "1:1", "handle", "10:",
                     *tbf_args(self.rate_mbit))  # fmt: skip
        else:
            self._tc("qdisc", verb, *dev, "root", "handle", "10:", *tbf_args(self.rate_mbit))

    def set_rate(self, rate_mbit: float) -> None:
        """Change the edge-to-cloud rate now (``tc qdisc change``); frames in flight feel it."""
        if not (math.isfinite(rate_mbit) and rate_mbit > 0):
            raise TestbedError(f"link rate must be a finite number > 0 Mbit/s, got {rate_mbit}")
        self.rate_mbit = rate_mbit
        self._shape("change")

    def qdisc_stats(self) -> str:
        """``tc -s qdisc show`` of the shaped end (rate, bytes sent, drops, backlog)."""
        return run(
            *self._ns_cmd(self.edge_ns, "tc", "-s", "qdisc", "show", "dev", self.edge_if)
        ).stdout

    def exec_argv(self, argv: Sequence[str], side: Side) -> list[str]:
        """``argv`` run inside the namespace of ``side`` (unchanged for a root edge)."""
        return self._ns_cmd(self.edge_ns if side == "edge" else self.cloud_ns, *argv)

    def close(self) -> None:
        """Remove what this link made, killing the processes still inside its namespaces."""
        for kind, name in reversed(self._made):
            if kind == "netns":
                remove_namespace(name)
            else:
                run("ip", "link", "del", name, check=False)
        self._made.clear()

    def __enter__(self) -> Link:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def next_index(name: str) -> int:
    """The serial number in a link's name (``ectb-1234x7`` -> 7)."""
    return int(name.rsplit("x", 1)[1])


def namespace_pids(ns: str) -> list[int]:
    out = run("ip", "netns", "pids", ns, check=False).stdout
    return [int(p) for p in out.split() if p.isdigit()]


def remove_namespace(ns: str, *, grace_s: float = 3.0) -> None:
    """SIGTERM the processes inside ``ns``, SIGKILL what is left after ``grace_s``, delete it."""
    for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 2.0)):
        pids = namespace_pids(ns)
        if not pids:
            break
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):  # it may have exited meanwhile
                os.kill(pid, sig)
        deadline = time.monotonic() + wait_s
        while namespace_pids(ns) and time.monotonic() < deadline:
            time.sleep(0.05)
    run("ip", "netns", "del", ns, check=False)


def leftovers() -> tuple[list[str], list[str]]:
    """(namespaces, root-namespace interfaces) whose names start with :data:`PREFIX`."""
    namespaces = [
        line.split()[0]
        for line in run("ip", "netns", "list", check=False).stdout.splitlines()
        if line.startswith(PREFIX)
    ]
    links = []
    for line in run("ip", "-o", "link", "show", check=False).stdout.splitlines():
        parts = line.split(":")
        if len(parts) > 1:
            ifname = parts[1].strip().split("@")[0]
            if ifname.startswith(PREFIX):
                links.append(ifname)
    return namespaces, links


def cleanup(*, everything: bool = False) -> tuple[list[str], list[str]]:
    """Remove testbed namespaces (and their processes) and interfaces left behind by
    processes that no longer run; with ``everything``, also those of running testbeds."""
    namespaces, links = leftovers()

    def orphaned(name: str) -> bool:
        pid = owner_pid(name)
        return pid is not None and (everything or not alive(pid))

    namespaces = [ns for ns in namespaces if orphaned(ns)]
    links = [ln for ln in links if orphaned(ln)]
    for ns in namespaces:
        remove_namespace(ns)
    for ifname in links:
        run("ip", "link", "del", ifname, check=False)
    return namespaces, links
