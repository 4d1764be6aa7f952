"""The cloud node: a gRPC server of every tail in a model repository.

    node = CloudNode(CloudConfig(repository=Path("repo"), port=0))
    port = node.start()          # binds, loads every tail once, health SERVING per model
    ...
    node.stop(grace_s=5)         # health NOT_SERVING, no new calls, in-flight calls finish

A stop() while start() still binds or loads tails wins: start() raises StartCancelled and
the node never reports SERVING. A configuration that exposes the node beyond this machine
without TLS or a token is logged at WARNING (:meth:`CloudConfig.exposure`).

It serves the Open Inference Protocol (``inference.GRPCInferenceService``, what tritonclient
speaks), edgecut's control API (``edgecut.v1.EdgecutService``), gRPC health checking (overall,
per service, per model ``<model>`` and per version ``<model>/<version>``) and reflection, and
optionally Prometheus metrics over HTTP. Servers and ports come from :mod:`protos.transport`.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from cloud_node.batcher import Batcher
from cloud_node.control import DEPLOY_METHOD, ControlService
from cloud_node.inference import InferenceService, InFlight, add_inference_service, server_version
from cloud_node.logs import LOGGER_NAME, log_event
from cloud_node.metrics import NodeMetrics
from cloud_node.models import READY, ModelStore, Tail
from cloud_node.rest import RestServer, bind, build_app
from partitioner.errors import EdgecutError
from protos import allocator, transport
from protos.edgecut.v1 import edgecut_pb2 as cpb
from protos.edgecut.v1 import edgecut_pb2_grpc as cpb_grpc
from protos.inference import grpc_service_pb2 as pb

if TYPE_CHECKING:
    from partitioner.deploy.signing import TrustKey

INFERENCE_SERVICE = pb.DESCRIPTOR.services_by_name["GRPCInferenceService"].full_name
CONTROL_SERVICE = cpb.DESCRIPTOR.services_by_name["EdgecutService"].full_name

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


@dataclass(frozen=True)
class CloudConfig:
    """Everything ``edgecut cloud serve`` can set; validated on creation."""

    repository: Path
    host: str = "127.0.0.1"
    port: int = 8001
    tls: transport.ServerTLS | None = None
    tokens: tuple[str, ...] = ()  # bearer tokens accepted (several during a rotation)
    max_batch: int = 16  # frames per batch; 1 turns dynamic batching off
    batch_timeout_ms: float = 1.0  # how long the first request of a batch waits for company
    max_queue_frames: int = 1024  # past this, ModelInfer answers RESOURCE_EXHAUSTED
    # Every caller waiting for its batch holds a gRPC thread: 16 concurrent edges need 16
    # threads, plus health watchers and metadata calls. Idle Python threads cost little.
    workers: int = 64
    max_message_bytes: int = transport.DEFAULT_MAX_MESSAGE_BYTES
    max_request_bytes: int = 256 * 1024 * 1024  # decoded inputs of one request
    threads: int | None = None  # torch intra-op threads of each instance; None: torch's setting
    # Instances of each tail that run batches at the same time (Triton's instance groups,
    # sharing the weights): with one torch thread each, one per core uses every core.
    instances: int = 1
    metrics_port: int | None = None
    metrics_host: str = "127.0.0.1"
    # OIP over HTTP/REST on the same host, TLS and tokens (cloud_node.rest); None: off.
    http_port: int | None = None
    # DeploySplit accepts calls bearing one of these (never an inference token); none: it is off.
    admin_tokens: tuple[str, ...] = ()
    trust_key: TrustKey | None = None  # serve and accept only versions this key signed
    max_deploy_bytes: int = 2 * 1024**3

    def __post_init__(self) -> None:
        object.__setattr__(self, "repository", Path(self.repository))
        checks = {
            "port": 0 <= self.port <= 65535,
            "max_batch": self.max_batch >= 1,
            "batch_timeout_ms": self.batch_timeout_ms >= 0,
            "max_queue_frames": self.max_queue_frames >= 1,
            "workers": self.workers >= 2,
            "max_request_bytes": self.max_request_bytes >= 1,
            "threads": self.threads is None or self.threads >= 1,
            "instances": self.instances >= 1,
            "metrics_port": self.metrics_port is None or 0 <= self.metrics_port <= 65535,
            "http_port": self.http_port is None or 0 <= self.http_port <= 65535,
        }
        for name, ok in checks.items():
            if not ok:
                raise EdgecutError(
                    f"cloud config: {name} = {getattr(self, name)!r} is out of range"
                )
        if self.workers < 2 * min(self.max_batch, 16):
            raise EdgecutError(
                f"cloud config: workers = {self.workers} cannot fill a batch of "
                f"{self.max_batch}: every waiting caller holds a worker; use at least "
                f"{2 * min(self.max_batch, 16)}"
            )
        if set(self.admin_tokens) & set(self.tokens):
            raise EdgecutError(
                "cloud config: an admin token is also an inference token; an admin token "
                "must be one no inference client holds"
            )

    @property
    def allow_deploy(self) -> bool:
        """DeploySplit uploads are accepted (from admin-token holders only)."""
        return bool(self.admin_tokens)

    def exposure(self) -> str | None:
        """One line warning of what a bind beyond loopback lacks (TLS, a token); else None."""
        if transport.is_loopback(self.host):
            return None
        gaps, risks, fixes = [], [], []
        if self.tls is None:
            gaps.append("TLS")
            secrets = " and bearer tokens" if self.tokens else ""
            risks.append(f"frames, results{secrets} cross the network in clear text")
            fixes.append("--tls-cert/--tls-key")
        if not self.tokens:
            gaps.append("a bearer token")
            risks.append("anyone who reaches the port can use the node")
            fixes.append("--token-file")
        if not gaps:
            return None
        return (
            f"binding {self.host or 'every interface'} (reachable beyond this machine) without "
            f"{' and without '.join(gaps)}: {'; '.join(risks)}; give {' and '.join(fixes)}"
        )


class StartCancelled(Exception):
    """stop() was called while start() was still binding or loading: the node never served."""


def _address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host and not host.startswith("[") else f"{host}:{port}"


class CloudNode:
    """A running cloud node; see the module docstring."""

    def __init__(self, config: CloudConfig, *, logger: logging.Logger | None = None) -> None:
        self.config = config
        self.log = logger or logging.getLogger(LOGGER_NAME)
        self.metrics = NodeMetrics()
        self.port: int | None = None
        self.metrics_port: int | None = None
        self.http_port: int | None = None
        self._rest: RestServer | None = None
        self._serving = False
        self._server: grpc.Server | None = None
        self._health = health.HealthServicer()
        self._stopped = threading.Event()
        self._in_flight = InFlight()
        self._stop_lock = threading.Lock()
        self._stopping = False
        self._store: ModelStore | None = None
        self._batcher: Batcher | None = None

    @property
    def address(self) -> str:
        return _address(self.config.host, self.port or 0)

    @property
    def store(self) -> ModelStore:
        assert self._store is not None, "start() first"
        return self._store

    def start(self) -> int:
        """Bind, serve, load every tail (health per model follows); returns the bound port.

        Raises StartCancelled if :meth:`stop` is called meanwhile (a SIGTERM during loading).
        """
        cfg = self.config
        allocator.keep_freed_memory()  # buffers and activations reused, not refaulted
        if cfg.threads is not None:
            import torch

            torch.set_num_threads(cfg.threads)
        self._store = ModelStore(cfg.repository, trust=cfg.trust_key)
        tails = self._store.tails()
        if not tails:
            raise EdgecutError(
                f"repository {cfg.repository} holds no cut with a tail to serve: expected "
                "<model>/<version>/ split artifacts (see `edgecut repository build`)"
            )
        self._batcher = Batcher(
            max_batch=cfg.max_batch,
            timeout_s=cfg.batch_timeout_ms / 1e3,
            max_queue_frames=cfg.max_queue_frames,
            instances=cfg.instances,
            on_batch=self._on_batch,
        )
        server = transport.build_server(
            max_workers=cfg.workers,
            max_message_bytes=cfg.max_message_bytes,
            # DeploySplit checks the admin token itself: an inference token must not pass there,
            # and the admin token need not be an inference token.
            interceptors=[
                transport.BearerTokenAuth(
                    cfg.tokens, public_methods=(*transport.HEALTH_METHODS, DEPLOY_METHOD)
                )
            ]
            if cfg.tokens
            else [],
            max_concurrent_rpcs=4 * cfg.workers,
        )
        inference = InferenceService(
            self._store,
            self._batcher,
            self.metrics,
            self.log,
            max_request_bytes=cfg.max_request_bytes,
            max_message_bytes=cfg.max_message_bytes,
            serving=lambda: self._serving,
            in_flight=self._in_flight,
        )
        control = ControlService(
            self._store,
            self.log,
            admin_tokens=cfg.admin_tokens,
            max_deploy_bytes=cfg.max_deploy_bytes,
            on_deployed=self._on_deployed,
            in_flight=self._in_flight,
        )
        add_inference_service(inference, server)
        cpb_grpc.add_EdgecutServiceServicer_to_server(control, server)
        health_pb2_grpc.add_HealthServicer_to_server(self._health, server)
        reflection.enable_server_reflection(
            (INFERENCE_SERVICE, CONTROL_SERVICE, health.SERVICE_NAME, reflection.SERVICE_NAME),
            server,
        )
        for service in ("", INFERENCE_SERVICE, CONTROL_SERVICE):
            self._health.set(service, NOT_SERVING)
        for tail in tails:
            self._set_model_health(tail, NOT_SERVING)
        # stop() may run at any time from a signal handler's thread: each step that would
        # (re)open the node checks, under the same lock, that no stop has begun.
        with self._stop_lock:
            if self._stopping:  # stop() may have run before the batcher existed
                self._batcher.close(drain=False, timeout_s=1.0)
                raise StartCancelled("stopped before the port was bound")
            try:
                self.port = transport.add_port(server, _address(cfg.host, cfg.port), cfg.tls)
            except OSError as exc:
                raise EdgecutError(
                    f"cannot listen on {_address(cfg.host, cfg.port)}: {exc}"
                ) from None
            rest = None
            if cfg.http_port is not None:
                try:
                    sock = bind(cfg.host, cfg.http_port)
                except OSError as exc:
                    raise EdgecutError(
                        f"cannot listen on {_address(cfg.host, cfg.http_port)} (HTTP): {exc}"
                    ) from None
                app = build_app(
                    inference,
                    tokens=cfg.tokens,
                    max_body_bytes=min(cfg.max_request_bytes, cfg.max_message_bytes),
                    max_body_name="max_request_bytes"
                    if cfg.max_request_bytes <= cfg.max_message_bytes
                    else "max_message_bytes",
                    server_version=server_version(),
                )
                rest = RestServer(app, sock, cfg.tls)
            server.start()
            self._server = server
            if rest is not None:
                self.http_port = rest.start()
                self._rest = rest
            self._serving = True
        exposure = cfg.exposure()
        if exposure is not None:
            log_event(self.log, "exposed", logging.WARNING, address=self.address, warning=exposure)
        # Health answers NOT_SERVING from here until every tail is loaded.
        log_event(self.log, "loading", address=self.address, port=self.port, tails=len(tails))
        started = time.monotonic()
        for i, tail in enumerate(tails):
            if self._stopping:
                log_event(self.log, "start_cancelled", loaded=i, tails=len(tails))
                raise StartCancelled(f"stopped after loading {i} of {len(tails)} tails")
            t0 = time.monotonic()
            tail.load()
            self._after_load(tail, time.monotonic() - t0)
        metrics_error: OSError | None = None
        with self._stop_lock:
            if self._stopping:
                log_event(self.log, "start_cancelled", loaded=len(tails), tails=len(tails))
                raise StartCancelled("stopped while the tails loaded")
            for service in ("", INFERENCE_SERVICE, CONTROL_SERVICE):
                self._health.set(service, SERVING)
            if cfg.metrics_port is not None:
                try:
                    self.metrics_port = self.metrics.serve(cfg.metrics_port, cfg.metrics_host)
                except OSError as exc:
                    metrics_error = exc
        if metrics_error is not None:
            self.stop(grace_s=0)  # outside the lock: stop() takes it
            raise EdgecutError(
                f"cannot serve metrics on {cfg.metrics_host}:{cfg.metrics_port}: {metrics_error}"
            )
        log_event(
            self.log,
            "serving",
            address=self.address,
            port=self.port,
            metrics_port=self.metrics_port,
            http_port=self.http_port,
            tls="mutual" if cfg.tls and cfg.tls.client_ca_file else bool(cfg.tls),
            auth="bearer" if cfg.tokens else "none",
            deploy="admin token" if cfg.admin_tokens else "off",
            trust_key=cfg.trust_key.key_id[:16] if cfg.trust_key else None,
            models={m: self._store.versions(m) for m in self._store.models()},
            max_batch=cfg.max_batch,
            batch_timeout_ms=cfg.batch_timeout_ms,
            instances=cfg.instances,
            threads=cfg.threads,
            load_s=round(time.monotonic() - started, 3),
        )
        return self.port

    def _after_load(self, tail: Tail, load_s: float) -> None:
        ready = tail.state == READY
        self._set_model_health(tail, SERVING if ready else NOT_SERVING)
        self.metrics.models_ready.set(sum(t.state == READY for t in self.store.tails()))
        log_event(
            self.log,
            "model_loaded" if ready else "model_failed",
            logging.INFO if ready else logging.ERROR,
            model=tail.model,
            version=tail.version,
            load_ms=round(load_s * 1e3, 1),
            reason=tail.reason or None,
        )

    def _set_model_health(self, tail: Tail, status: Any) -> None:
        self._health.set(f"{tail.model}/{tail.version}", status)
        ready = any(t.state == READY for t in self.store.tails() if t.model == tail.model)
        self._health.set(tail.model, SERVING if ready else NOT_SERVING)

    def _on_deployed(self, tail: Tail) -> None:
        self._after_load(tail, 0.0)

    def _on_batch(
        self, key: Any, frames: int, compute_s: float, queue_s: float, instance: int
    ) -> None:
        labels = {"model": key.model, "version": key.version}
        self.metrics.batch_size.labels(**labels).observe(frames)
        self.metrics.compute_seconds.labels(**labels).observe(compute_s)
        self.metrics.instance_batches.labels(instance=str(instance)).inc()
        self.metrics.instance_busy_seconds.labels(instance=str(instance)).inc(compute_s)

    def stop(self, grace_s: float = 5.0, *, drain_s: float = 0.0) -> None:
        """Graceful shutdown: health NOT_SERVING, refuse new calls, let in-flight ones finish.

        For ``drain_s`` the server still takes calls while health says NOT_SERVING, so load
        balancers and edges watching health move away first; then new calls are refused and
        running ones get ``grace_s`` to finish.
        """
        with self._stop_lock:
            if self._stopping:
                self._stopped.wait()
                return
            self._stopping = True
        log_event(self.log, "stopping", grace_s=grace_s, drain_s=drain_s)
        self._health.enter_graceful_shutdown()
        if drain_s > 0:
            time.sleep(drain_s)
        if self._rest is not None:
            self._rest.stop(grace_s)
        if self._server is not None:
            # New RPCs are refused at once; running ones get grace_s to finish. Health
            # watches never finish by themselves, so once the real work is done they are
            # cancelled instead of holding the shutdown for the whole grace period.
            done = self._server.stop(grace_s)
            self._in_flight.wait_idle(grace_s)
            self._server.stop(0)
            done.wait()
        # Mark not serving only now: requests accepted before stop() still get their batch.
        self._serving = False
        if self._batcher is not None:
            self._batcher.close(drain=True, timeout_s=max(grace_s, 1.0))
        self.metrics.close()
        self._stopped.set()
        log_event(self.log, "stopped")

    def wait(self, timeout_s: float | None = None) -> bool:
        """Block until :meth:`stop` has finished; False on timeout."""
        return self._stopped.wait(timeout_s)

    def __enter__(self) -> CloudNode:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop(grace_s=1.0)
