"""Prometheus metrics of a cloud node: requests, batch sizes, queue and compute time, errors.

Each :class:`NodeMetrics` has its own registry (several nodes may share a process in tests);
:meth:`NodeMetrics.serve` exposes it over HTTP at ``/metrics``. Series are labelled only with
the models and versions the repository serves: any other name a client sends is counted under
:data:`UNKNOWN`, so that clients cannot grow the registry one invented name at a time.
"""

from __future__ import annotations

import threading
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

# The model or version label of a request for a name the repository does not serve. A
# repository name starts with a letter or digit and a version is a number: no collision.
UNKNOWN = "_unknown"
# Batches are at most a few dozen frames; powers of two show how full they run.
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)
# From a loopback round trip (~0.1 ms) to a request stuck behind a long batch (seconds).
_SECONDS_BUCKETS = (0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5)


class NodeMetrics:
    """The node's counters and histograms, labelled by served model and version (or UNKNOWN)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "edgecut_requests",
            "ModelInfer requests answered, by model, version and gRPC status code",
            ["model", "version", "code"],
            registry=self.registry,
        )
        self.errors = Counter(
            "edgecut_request_errors",
            "Requests that failed, by gRPC status code",
            ["code"],
            registry=self.registry,
        )
        self.frames = Counter(
            "edgecut_frames",
            "Frames (batch rows) inferred",
            ["model", "version"],
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "edgecut_batch_size_frames",
            "Frames per batch the tail ran",
            ["model", "version"],
            buckets=_BATCH_BUCKETS,
            registry=self.registry,
        )
        self.queue_seconds = Histogram(
            "edgecut_queue_seconds",
            "Time a request waited for its batch to start",
            ["model", "version"],
            buckets=_SECONDS_BUCKETS,
            registry=self.registry,
        )
        self.compute_seconds = Histogram(
            "edgecut_compute_seconds",
            "Time the tail took per batch",
            ["model", "version"],
            buckets=_SECONDS_BUCKETS,
            registry=self.registry,
        )
        self.request_seconds = Histogram(
            "edgecut_request_seconds",
            "ModelInfer handling time on the server, decode to encode",
            ["model", "version"],
            buckets=_SECONDS_BUCKETS,
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "edgecut_requests_in_flight",
            "ModelInfer requests being handled",
            registry=self.registry,
        )
        # Labelled by instance index (0 .. --instances - 1): bounded by the node's own setting.
        self.instance_batches = Counter(
            "edgecut_instance_batches",
            "Batches run, by instance of the tails",
            ["instance"],
            registry=self.registry,
        )
        self.instance_busy_seconds = Counter(
            "edgecut_instance_busy_seconds",
            "Time each instance spent running batches (its rate is the instance's utilisation)",
            ["instance"],
            registry=self.registry,
        )
        self.models_ready = Gauge(
            "edgecut_model_versions_ready",
            "Model versions loaded and serving",
            registry=self.registry,
        )
        self._http: Any = None
        self._thread: threading.Thread | None = None

    def serve(self, port: int, host: str = "127.0.0.1") -> int:
        """Expose ``/metrics`` on ``host:port`` (0 picks a port); returns the bound port."""
        server, thread = start_http_server(port, addr=host, registry=self.registry)
        self._http, self._thread = server, thread
        return int(server.server_port)

    def close(self) -> None:
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None
