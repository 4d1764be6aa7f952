"""The edge node: frames in, results out, in order, each answered by the cloud or locally.

For each frame the node picks a cut (fixed, or by the breakpoint table at the current uplink
estimate when adaptive), runs that cut's head, encodes the crossing tensors with the codec,
sends ModelInfer with a deadline and decodes the answer. A cut switch only changes which head
the *next* frame runs: every version's tail is already on the cloud, so no frame is dropped or
sent twice. When the cloud fails (down, deadline passed, refusing), the frame is answered by
the whole model on the edge and marked local; the node tries the cloud again after
``retry_interval_s`` with a ping, and returns to it once it answers. A frame ends as a cloud
result, a local result, or an explicit error: never lost.

Frames flow as a pipeline: the node runs frame k's head while up to ``window - 1`` earlier
frames are on the wire or in the cloud (the calls run on a small thread pool; gRPC releases
the GIL), and hands results over in frame order. A frame is *in flight* from the moment the
node takes it until its result is handed over, so ``window = 1`` is stop-and-wait: head,
blocking call, next frame. When a frame's capture tick comes while ``window`` frames are in
flight, the late policy decides: ``queue`` (the default) takes it as soon as a slot frees,
its wait counted in its latency; ``drop`` skips it (a ``skipped`` result, counted). Any frame
answered more than ``deadline_ms`` after its capture is ``missed``; every captured frame ends
as exactly one of answered (on time), skipped, missed or failed (an error result).

Falling back is for faults after a good start only. On creation the node checks the cloud
once (connection, TLS, token, the model and every version it holds a head for): a
misconfiguration raises EdgecutError with one line saying what to fix, and so does a cloud
still unreachable after ``start_timeout_s``, since answering every frame locally would hide
a wrong address as well as an outage. A cloud that is a standard OIP server (Triton, MLServer:
edgecut's ListCuts is UNIMPLEMENTED there) is checked by ModelReady for every version instead;
whether its tails match these heads cannot be checked then, and a warning says so.

    node = EdgeNode(EdgeModel.load(open_model("repo")), CloudClient("host:8001"), EdgeConfig())
    summary = node.run(SyntheticSource((1, 3, 224, 224), frames=100, fps=10))
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edge_node.client import CloudClient, CloudError
from edge_node.estimator import BandwidthEstimator
from edge_node.heads import EdgeModel, Head
from edge_node.sources import Frame
from partitioner.deploy import crossing
from partitioner.deploy.repository import Band
from partitioner.errors import EdgecutError
from protos import serde
from protos.edgecut.v1 import edgecut_pb2 as cpb

log = logging.getLogger("edge_node")

CLOUD, LOCAL, ERROR, SKIPPED = "cloud", "local", "error", "skipped"
# What a frame whose capture tick finds the window full does (module doc).
LATE_POLICIES = ("queue", "drop")

# Statuses after which the cloud is treated as gone until a ping answers again.
_DOWN_CODES = frozenset({"UNAVAILABLE", "DEADLINE_EXCEEDED", "CANCELLED", "UNKNOWN", "INTERNAL"})


@dataclass(frozen=True)
class EdgeConfig:
    """How an edge node chooses cuts and handles failure; validated on creation."""

    version: str | None = None  # fixed cut; None: the repository's default version
    adaptive: bool = False  # follow the breakpoint table at the estimated uplink bandwidth
    codec: str | None = None  # feature codec on the wire; None: the repository's
    deadline_ms: float = 2000.0
    fallback: bool = True  # answer with the local whole model when the cloud cannot
    retry_interval_s: float = 1.0  # after a failure, wait this long before trying the cloud
    probe_interval_s: float = 2.0  # in an edge-only band, send a frame this often to measure
    ping_interval_s: float = 1.0  # how often to measure the base round trip
    hysteresis: float = 0.15  # leave a band only this far (relative) past its edges
    initial_mbps: float | None = None  # the estimate before any transfer; None: the plan's
    ewma_alpha: float = 0.3
    start_timeout_s: float = 10.0  # wait this long for an unreachable cloud at start
    window: int = 1  # frames in flight at most (taken, not yet handed over); 1: stop-and-wait
    late: str = "queue"  # a frame captured while the window is full: "queue" or "drop"

    def __post_init__(self) -> None:
        checks = {
            "deadline_ms": self.deadline_ms > 0,
            "start_timeout_s": self.start_timeout_s >= 0,
            "retry_interval_s": self.retry_interval_s >= 0,
            "probe_interval_s": self.probe_interval_s > 0,
            "ping_interval_s": self.ping_interval_s > 0,
            "hysteresis": 0 <= self.hysteresis < 1,
            "initial_mbps": self.initial_mbps is None or self.initial_mbps > 0,
            "ewma_alpha": 0 < self.ewma_alpha <= 1,
        }
        for name, ok in checks.items():
            if not ok:
                raise EdgecutError(f"edge config: {name} = {getattr(self, name)!r} is out of range")
        if isinstance(self.window, bool) or not isinstance(self.window, int) or self.window < 1:
            raise EdgecutError(f"edge config: window must be an integer >= 1, got {self.window!r}")
        if self.late not in LATE_POLICIES:
            raise EdgecutError(
                f"edge config: late must be one of {', '.join(LATE_POLICIES)}, got {self.late!r}"
            )


@dataclass
class FrameResult:
    """What became of one frame."""

    frame_id: int
    where: str  # "cloud" | "local" | "error" | "skipped" (late policy drop: never run)
    outputs: dict[str, np.ndarray]  # model outputs (batch 1); empty for an error
    version: str | None  # the cut whose tail answered (cloud), else None
    reason: str  # "fixed" | "adaptive" | "probe" | "edge_only" | "fallback" | "cloud_down" | ...
    error: str | None = None  # the error (an error result), or the cloud's error before fallback
    latency_ms: float = 0.0  # capture to result
    edge_ms: float = 0.0  # head + encode
    transfer_ms: float = 0.0  # the call's time minus the server's: uplink, wire and RTT
    cloud_ms: float = 0.0  # the server's own time (queue + compute + decode)
    local_ms: float = 0.0  # the whole model on the edge
    bytes_sent: int = 0
    estimate_mbps: float | None = None
    name: str = ""
    missed: bool = False  # answered, but more than deadline_ms after its capture
    answered_s: float = 0.0  # time.monotonic() when the answer was ready

    def to_json(self) -> dict[str, Any]:
        top = {}
        for key, value in self.outputs.items():  # one frame: its batch dim may be any dim
            top[key] = int(value.reshape(-1).argmax()) if value.size else None
        return {
            "frame_id": self.frame_id,
            "name": self.name,
            "where": self.where,
            "version": self.version,
            "reason": self.reason,
            "error": self.error,
            "top1": top,
            "latency_ms": self.latency_ms,
            "edge_ms": self.edge_ms,
            "transfer_ms": self.transfer_ms,
            "cloud_ms": self.cloud_ms,
            "local_ms": self.local_ms,
            "bytes_sent": self.bytes_sent,
            "estimate_mbps": self.estimate_mbps,
            "missed": self.missed,
        }


@dataclass
class _Stats:
    frames: int = 0
    skipped: int = 0
    missed: int = 0
    where: Counter[str] = field(default_factory=Counter)
    versions: Counter[str] = field(default_factory=Counter)
    cloud_errors: Counter[str] = field(default_factory=Counter)
    latency_ms: list[float] = field(default_factory=list)
    edge_ms: list[float] = field(default_factory=list)
    transfer_ms: list[float] = field(default_factory=list)
    cloud_ms: list[float] = field(default_factory=list)
    local_ms: list[float] = field(default_factory=list)
    bytes_sent: int = 0
    fallbacks: int = 0
    probes: int = 0
    switches: list[dict[str, Any]] = field(default_factory=list)
    cloud_lost: int = 0
    cloud_back: int = 0
    started_s: float | None = None
    ended_s: float | None = None


def _percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p95": None, "p99": None, "mean": None, "max": None}
    a = np.asarray(values)
    return {
        "p50": float(np.percentile(a, 50)),
        "p95": float(np.percentile(a, 95)),
        "p99": float(np.percentile(a, 99)),
        "mean": float(a.mean()),
        "max": float(a.max()),
    }


def _mean(values: list[float]) -> float | None:
    return float(np.mean(values)) if values else None


class EdgeNode:
    """Runs frames through a repository model's heads and a cloud node; see the module doc."""

    def __init__(
        self,
        model: EdgeModel,
        client: CloudClient | None,
        config: EdgeConfig | None = None,
        *,
        check_cloud: bool = True,
    ) -> None:
        self.model = model
        self.client = client
        self.config = config or EdgeConfig()
        cfg = self.config
        entry = model.entry
        self.codec = cfg.codec or entry.codec
        if self.codec != "none":
            from partitioner.codecs import CODECS

            CODECS.get(self.codec)
        if cfg.adaptive and not entry.bands:
            raise EdgecutError(
                f"model {entry.name!r} has no breakpoint table: --adaptive needs a repository "
                "built with --sweep-bandwidth"
            )
        # None when the repository holds no cut at all: every frame then runs locally.
        self.fixed_version = cfg.version or entry.default_version
        if self.fixed_version is not None:
            model.head(self.fixed_version)
        for band in entry.bands if cfg.adaptive else ():
            if band.version is not None:
                model.head(band.version)
        self.estimator = BandwidthEstimator(
            alpha=cfg.ewma_alpha, initial_mbps=cfg.initial_mbps or self._planned_mbps()
        )
        self._band: Band | None = None
        self._cloud_ok = client is not None
        self._retry_at = 0.0
        self._last_ping = -math.inf
        self._last_probe = -math.inf
        self._stats = _Stats()
        # Calls run on worker threads when window > 1: cloud state, stats and the uplink
        # bookkeeping change under this lock.
        self._lock = threading.Lock()
        self._uplink_free_s = -math.inf  # when the uplink finished the latest request
        if client is not None and check_cloud:
            self._check_cloud()

    # ------------------------------------------------------------------ set-up

    def _planned_mbps(self) -> float | None:
        version = self.fixed_version or next(
            (b.version for b in self.model.entry.bands if b.version), None
        )
        if version is None or version not in self.model.heads:
            return None
        bw = self.model.heads[version].manifest.get("plan", {}).get("bandwidth_mbps")
        return float(bw) if isinstance(bw, int | float) and bw > 0 else None

    def _check_cloud(self) -> None:
        """The start-up check (see the module doc): EdgecutError unless the cloud fits."""
        assert self.client is not None
        client = self.client
        deadline = time.monotonic() + self.config.start_timeout_s
        waiting = False
        while True:
            try:
                listing = client.list_cuts(self.model.name, timeout_s=5.0)
                break
            except CloudError as exc:
                if exc.code == "NOT_FOUND":
                    raise EdgecutError(
                        f"the cloud at {client.target} does not serve model "
                        f"{self.model.name!r} ({exc.message}): deploy the same repository to "
                        "both nodes"
                    ) from None
                if exc.code == "UNIMPLEMENTED":
                    self._check_standard_server()
                    return
                why = client.explain(exc)  # raises on a misconfiguration
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise EdgecutError(
                    f"cloud {client.target} cannot be reached: {why} (tried for "
                    f"{self.config.start_timeout_s:g} s): start the cloud first, or fix --cloud"
                )
            if not waiting:
                waiting = True
                log.warning(
                    "cloud %s not reachable yet (%s); trying for up to %g s",
                    client.target,
                    why,
                    self.config.start_timeout_s,
                )
            time.sleep(min(0.5, remaining))  # gRPC's reconnect backoff is capped at 1 s
        served = {cut.version: cut for m in listing.models for cut in m.cuts}
        for version, head in self.model.heads.items():
            cut = served.get(version)
            if cut is None:
                raise EdgecutError(
                    f"the cloud at {self.client.target} has no version {version} of model "
                    f"{self.model.name!r} (it has {', '.join(served) or 'none'}): deploy the "
                    "same repository to both nodes"
                )
            if cut.state == cpb.CUT_STATE_FAILED:
                raise EdgecutError(
                    f"the cloud at {self.client.target} failed to load version {version} of "
                    f"model {self.model.name!r}: {cut.reason}"
                )
            if cut.head_sha256 and cut.head_sha256 != head.sha256:
                raise EdgecutError(
                    f"version {version} of {self.model.name!r} differs between edge and cloud "
                    f"(head sha256 {head.sha256[:12]}… here, {cut.head_sha256[:12]}… there): "
                    "deploy the same repository to both nodes"
                )

    def _check_standard_server(self) -> None:
        """A cloud without edgecut's ListCuts (Triton, MLServer): every version must be ready."""
        assert self.client is not None
        client = self.client
        for version in self.model.heads:
            try:
                ready = client.model_ready(self.model.name, version, timeout_s=5.0)
            except CloudError as exc:
                raise EdgecutError(
                    f"the cloud at {client.target} cannot say whether version {version} of "
                    f"{self.model.name!r} is ready ({exc.code}: {exc.message}): deploy the "
                    "exported tails there (edgecut repository export --format triton)"
                ) from None
            if not ready:
                raise EdgecutError(
                    f"the cloud at {client.target} has no ready version {version} of model "
                    f"{self.model.name!r}: deploy the exported tails there "
                    "(edgecut repository export --format triton)"
                )
        log.warning(
            "cloud %s is a standard OIP server (no edgecut ListCuts): versions %s of %r are "
            "ready, but whether its tails match these heads cannot be checked",
            client.target,
            ", ".join(self.model.heads),
            self.model.name,
        )

    # ----------------------------------------------------------------- choosing

    def _in_band(self, band: Band, mbps: float) -> bool:
        bands = self.model.entry.bands
        h = self.config.hysteresis
        lo = 0.0 if band is bands[0] else band.min_mbps * (1 - h)
        hi = math.inf if band is bands[-1] else band.max_mbps * (1 + h)
        return lo <= mbps < hi

    def _choose(self, frame_id: int) -> tuple[str | None, str]:
        """The version for this frame (None: run locally) and why."""
        cfg = self.config
        if not cfg.adaptive:
            return self.fixed_version, "fixed" if self.fixed_version else "edge_only"
        bands = self.model.entry.bands
        mbps = self.estimator.mbps
        now = time.monotonic()
        if self._band is None:
            self._band = self.model.entry.band_for(mbps) if mbps else bands[-1]
            self._last_probe = now
        elif mbps is not None and not self._in_band(self._band, mbps):
            band = self.model.entry.band_for(mbps)
            if band.version != self._band.version:
                self._stats.switches.append(
                    {
                        "frame_id": frame_id,
                        "from": self._band.version or "local",
                        "to": band.version or "local",
                        "estimate_mbps": mbps,
                    }
                )
                log.info(
                    "cut switch at frame %d: %s -> %s (uplink estimate %.2f Mbit/s)",
                    frame_id,
                    self._band.version or "local",
                    band.version or "local",
                    mbps,
                )
            if band.version is None and self._band.version is not None:
                self._last_probe = now  # just measured: the first probe can wait
            self._band = band
        if self._band.version is not None:
            return self._band.version, "adaptive"
        # An edge-only band sends nothing, so the estimate would never move: send a frame
        # through the nearest cloud cut now and then to measure the uplink.
        if now - self._last_probe >= cfg.probe_interval_s:
            probe = self._probe_version()
            if probe is not None:
                self._last_probe = now
                return probe, "probe"
        return None, "edge_only"

    def _probe_version(self) -> str | None:
        bands = self.model.entry.bands
        i = bands.index(self._band) if self._band in bands else 0
        for j in [*range(i + 1, len(bands)), *range(i - 1, -1, -1)]:
            if bands[j].version is not None:
                return bands[j].version
        return None

    # ----------------------------------------------------------------- cloud state

    def _mark_down(self, code: str) -> None:
        with self._lock:
            if self._cloud_ok:
                self._stats.cloud_lost += 1
                log.warning("cloud %s failed (%s): answering locally", self._target(), code)
            self._cloud_ok = False
            self._retry_at = time.monotonic() + self.config.retry_interval_s

    def _target(self) -> str:
        return self.client.target if self.client else "-"

    def _cloud_available(self) -> bool:
        if self.client is None:
            return False
        if self._cloud_ok:
            return True
        if time.monotonic() < self._retry_at:
            return False
        try:
            rtt = self.client.ping(timeout_s=min(1.0, self.config.deadline_ms / 1e3))
        except CloudError:
            self._retry_at = time.monotonic() + self.config.retry_interval_s
            return False
        self.estimator.add_rtt(rtt)
        self._cloud_ok = True
        self._stats.cloud_back += 1
        log.info("cloud %s answers again: back to the cloud", self._target())
        return True

    def _maybe_ping(self) -> None:
        if self.client is None or not self._cloud_ok:
            return
        now = time.monotonic()
        if now - self._last_ping < self.config.ping_interval_s:
            return
        self._last_ping = now
        try:
            self.estimator.add_rtt(
                self.client.ping(timeout_s=min(1.0, self.config.deadline_ms / 1e3))
            )
        except CloudError as exc:
            self._mark_down(exc.code)

    # ------------------------------------------------------------------ frames

    def process(self, frame: Frame) -> FrameResult:
        """Answer one frame (blocking): cloud, local, or an explicit error."""
        step = self._begin(frame)
        return self._complete(frame, step() if callable(step) else step)

    def _begin(self, frame: Frame) -> FrameResult | Callable[[], FrameResult]:
        """Everything before the wire: the frame's result, or the call that will answer it."""
        with self._lock:
            if self._stats.started_s is None:
                self._stats.started_s = frame.captured_s
        if frame.error is not None or frame.data is None:
            return FrameResult(frame.id, ERROR, {}, None, "source", error=frame.error)
        expected = self.model.input_shape
        if tuple(frame.data.shape) != (1, *expected[1:]):
            return FrameResult(
                frame.id,
                ERROR,
                {},
                None,
                "source",
                error=f"frame shape {list(frame.data.shape)}, the model takes {[1, *expected[1:]]}",
            )
        self._maybe_ping()
        version, reason = self._choose(frame.id)
        if version is None:
            return self._local(frame, reason)
        if not self._cloud_available():
            if reason == "probe":  # the band is edge-only anyway: no failure to report
                return self._local(frame, "edge_only")
            return self._local(frame, "cloud_down", fallback=True)
        return self._head(frame, self.model.head(version), reason)

    def _head(self, frame: Frame, head: Head, reason: str) -> Callable[[], FrameResult]:
        """Run the head and encode; returns the call that sends it (blocking, thread-safe)."""
        assert self.client is not None and frame.data is not None
        client = self.client
        t0 = time.monotonic()
        mid = head.run(frame.data)
        inputs, params = crossing.encode_inputs(mid, head.crossing, self.codec)
        request = serde.InferRequest(
            model_name=self.model.name,
            model_version=head.version,
            id=str(frame.id),
            inputs=inputs,
            input_parameters=params,
        )
        edge_s = time.monotonic() - t0
        if reason == "probe":
            with self._lock:
                self._stats.probes += 1

        def send() -> FrameResult:
            sent_s = time.monotonic()
            try:
                response, timing = client.infer(request, self.config.deadline_ms / 1e3)
                outputs = self._check_outputs(response)
            except CloudError as exc:
                with self._lock:
                    self._stats.cloud_errors[exc.code] += 1
                if exc.code == "DEADLINE_EXCEEDED":
                    waited = time.monotonic() - sent_s
                    self.estimator.add_timeout(sum(a.nbytes for a in inputs.values()), waited)
                if exc.code in _DOWN_CODES:
                    self._mark_down(exc.code)
                else:
                    log.warning("cloud refused frame %d: %s", frame.id, exc)
                result = self._local(frame, "fallback", fallback=True, cloud_error=str(exc))
                result.edge_ms = edge_s * 1e3
                return result
            self._add_transfer(sent_s, timing.request_bytes, timing.elapsed_s, timing.server_s)
            return FrameResult(
                frame.id,
                CLOUD,
                outputs,
                head.version,
                reason,
                edge_ms=edge_s * 1e3,
                transfer_ms=max(timing.elapsed_s - timing.server_s, 0.0) * 1e3,
                cloud_ms=timing.server_s * 1e3,
                bytes_sent=timing.request_bytes,
            )

        return send

    def _add_transfer(self, sent_s: float, nbytes: int, elapsed_s: float, server_s: float) -> None:
        """One call's uplink sample. With frames in flight a request may wait on the uplink
        behind the one before it: that wait is the earlier request's, not this one's."""
        with self._lock:
            uplink_done_s = sent_s + elapsed_s - server_s - self.estimator.rtt_ms / 1e3
            behind_s = max(0.0, min(self._uplink_free_s, uplink_done_s) - sent_s)
            self._uplink_free_s = max(self._uplink_free_s, uplink_done_s)
        self.estimator.add_transfer(nbytes, elapsed_s - behind_s, server_s)

    def _check_outputs(self, response: serde.InferResponse) -> dict[str, np.ndarray]:
        names = self.model.output_names
        missing = [n for n in names if n not in response.outputs]
        if missing:
            raise CloudError(
                "DATA_LOSS", f"the cloud's answer lacks output {missing[0]!r} (expected {names})"
            )
        return {n: np.asarray(response.outputs[n]) for n in names}

    def _local(
        self, frame: Frame, reason: str, *, fallback: bool = False, cloud_error: str | None = None
    ) -> FrameResult:
        assert frame.data is not None
        local = self.model.local
        if fallback:
            with self._lock:
                self._stats.fallbacks += 1
        if local is None or (fallback and not self.config.fallback):
            why = cloud_error or "the cloud is unavailable"
            return FrameResult(
                frame.id,
                ERROR,
                {},
                None,
                reason,
                error=f"{why}; and no local model to answer with"
                if local is None
                else f"{why}; local fallback is off",
            )
        t0 = time.monotonic()
        out = local.run(frame.data)
        local_s = time.monotonic() - t0
        outputs = dict(zip(self.model.output_names, out, strict=True))
        return FrameResult(
            frame.id, LOCAL, outputs, None, reason, error=cloud_error, local_ms=local_s * 1e3
        )

    def _complete(self, frame: Frame, result: FrameResult) -> FrameResult:
        """Stamp and count a frame's answer (on the thread that answered it)."""
        now = time.monotonic()
        result.answered_s = now
        result.latency_ms = (now - frame.captured_s) * 1e3
        result.name = frame.name
        result.estimate_mbps = self.estimator.mbps
        result.missed = result.where != ERROR and result.latency_ms > self.config.deadline_ms
        with self._lock:
            self._record(result)
        return result

    def _record(self, r: FrameResult) -> None:
        s = self._stats
        s.frames += 1
        s.where[r.where] += 1
        s.versions[r.version or r.where] += 1
        s.bytes_sent += r.bytes_sent
        s.missed += r.missed
        s.ended_s = max(s.ended_s or r.answered_s, r.answered_s)
        if r.where != ERROR:
            s.latency_ms.append(r.latency_ms)
        if r.where == CLOUD:
            s.edge_ms.append(r.edge_ms)
            s.transfer_ms.append(r.transfer_ms)
            s.cloud_ms.append(r.cloud_ms)
        elif r.where == LOCAL:
            s.local_ms.append(r.local_ms)

    def _call(self, frame: Frame, call: Callable[[], FrameResult]) -> FrameResult:
        return self._complete(frame, call())

    def _skip(self, frame: Frame) -> FrameResult:
        """A frame the late policy ``drop`` never ran: counted, and handed over in order."""
        with self._lock:
            self._stats.skipped += 1
            if self._stats.started_s is None:
                self._stats.started_s = frame.captured_s
        return FrameResult(
            frame.id,
            SKIPPED,
            {},
            None,
            "late",
            error="captured while the window was full (late policy drop)",
            name=frame.name,
        )

    def run(
        self, frames: Iterable[Frame], on_result: Callable[[FrameResult], None] | None = None
    ) -> dict[str, Any]:
        """Process every frame, up to ``window`` in flight, handing results over in frame
        order (skipped frames too); returns :meth:`summary`."""
        window = self.config.window
        drop = self.config.late == "drop"
        # Calls of frames in flight; with window 1 the call runs inline (stop-and-wait).
        pool = ThreadPoolExecutor(window, "edge-call") if window > 1 else None
        # Frames not handed over yet, in frame order; skipped ones hold no slot.
        pending: deque[tuple[Future[FrameResult], bool]] = deque()
        inflight = 0
        full: deque[tuple[float, float]] = deque()  # spans during which the window was full
        freed_s = -math.inf  # when the latest hand-over freed its slot: in order, so the
        # latest answer of the frames handed over (not when this loop got round to it)

        def hand_over_next() -> FrameResult:
            nonlocal inflight, freed_s
            future, holds_slot = pending.popleft()
            result = future.result()
            inflight -= holds_slot
            if holds_slot:
                freed_s = max(freed_s, result.answered_s)
            if on_result is not None:
                on_result(result)
            return result

        try:
            for frame in frames:
                while full and full[0][1] <= frame.captured_s:
                    full.popleft()
                future: Future[FrameResult] = Future()
                if drop and full and full[0][0] <= frame.captured_s:
                    future.set_result(self._skip(frame))
                    pending.append((future, False))
                    continue
                taken_s = time.monotonic()
                step = self._begin(frame)
                if callable(step) and pool is not None:
                    future = pool.submit(self._call, frame, step)
                else:
                    future.set_result(self._complete(frame, step() if callable(step) else step))
                pending.append((future, True))
                inflight += 1
                if inflight >= window:
                    # Full from when this frame took the last slot until the oldest frame in
                    # flight is answered and handed over.
                    while hand_over_next().where == SKIPPED:
                        pass
                    full.append((taken_s, max(taken_s, freed_s)))
                while pending and pending[0][0].done():
                    hand_over_next()
            while pending:
                hand_over_next()
        finally:
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)
        return self.summary()

    def summary(self) -> dict[str, Any]:
        """The run so far as the ``edgecut edge run --json`` object (docs/contracts.md)."""
        s = self._stats
        wall_s = (s.ended_s - s.started_s) if s.started_s and s.ended_s else 0.0
        return {
            "model": self.model.name,
            "cloud": self._target(),
            "codec": self.codec,
            "adaptive": self.config.adaptive,
            "frames": s.frames,
            "cloud_frames": s.where[CLOUD],
            "local_frames": s.where[LOCAL],
            "error_frames": s.where[ERROR],
            # Every captured frame is exactly one of answered, skipped, missed, failed.
            "window": self.config.window,
            "late": self.config.late,
            "captured": s.frames + s.skipped,
            "answered": s.frames - s.where[ERROR] - s.missed,
            "skipped": s.skipped,
            "missed": s.missed,
            "failed": s.where[ERROR],
            "latency_ms": _percentiles(s.latency_ms),
            "breakdown_ms": {
                "edge": _mean(s.edge_ms),
                "transfer": _mean(s.transfer_ms),
                "cloud": _mean(s.cloud_ms),
                "local": _mean(s.local_ms),
            },
            "bytes_sent": s.bytes_sent,
            "cut_switches": len(s.switches),
            "switches": list(s.switches),
            "fallbacks": s.fallbacks,
            "cloud_lost": s.cloud_lost,
            "cloud_back": s.cloud_back,
            "probes": s.probes,
            "cloud_errors": dict(s.cloud_errors),
            "versions": dict(s.versions),
            "estimate_mbps": self.estimator.mbps,
            "rtt_ms": self.estimator.rtt_ms,
            "wall_s": wall_s,
            "fps": s.frames / wall_s if wall_s > 0 else None,
        }
