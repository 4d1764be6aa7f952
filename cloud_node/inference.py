"""The Open Inference Protocol service (KServe v2 gRPC) of the cloud node.

Each model of the repository is a split network and each of its versions one cut: ModelInfer
runs that cut's tail on the crossing tensors the edge sends. A request is checked against the
cut's manifest (input names, datatypes, shapes, then byte counts, then the codec payload)
before torch sees it, queued to the :class:`~cloud_node.batcher.Batcher`, and answered with
the tail's outputs plus ``edgecut.queue_ms`` / ``edgecut.compute_ms`` / ``edgecut.batch_frames``
parameters that the edge uses to separate server time from network time.

What a request costs is decided from what it declares before a byte is decoded: its batch
against the model's limit, its decoded size against ``max_request_bytes``, its reply against
``max_message_bytes``, its frames against the queue (reserved before decoding, so a request
that cannot queue is never decompressed).
Names a client sends reach metrics only if the repository serves them, and reach messages and
logs clipped (:func:`protos.errors.clip`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

import grpc
import numpy as np

from cloud_node.batcher import Batcher, BatcherClosed, BatchTooLarge, QueueFull, Reservation
from cloud_node.logs import log_event
from cloud_node.metrics import UNKNOWN, NodeMetrics
from cloud_node.models import READY, ModelStore, NotFound, Tail, Unavailable
from partitioner.deploy import crossing
from partitioner.errors import EdgecutError
from protos import arrays, serde, splice
from protos.errors import ECHO_CHARS, TensorWireError, clip
from protos.inference import grpc_service_pb2 as pb
from protos.inference import grpc_service_pb2_grpc as pb_grpc

PLATFORM = "edgecut_torch_export"
# Status details travel in a trailer that gRPC clients refuse above 16 KiB (and may refuse above
# 8 KiB), percent-encoded: 2 KiB of UTF-8 stays under both, so an error stays its own status
# instead of turning into the client's RESOURCE_EXHAUSTED.
_MAX_DETAILS_BYTES = 2048


class InFlight:
    """Counts the calls doing work (not health watches), so shutdown knows when they are done."""

    def __init__(self) -> None:
        self._count = 0
        self._idle = threading.Condition()

    def __enter__(self) -> None:
        with self._idle:
            self._count += 1

    def __exit__(self, *exc: object) -> None:
        with self._idle:
            self._count -= 1
            if self._count == 0:
                self._idle.notify_all()

    def wait_idle(self, timeout_s: float) -> bool:
        with self._idle:
            return self._idle.wait_for(lambda: self._count == 0, timeout_s)


def _remaining(context: Any) -> float | None:
    remaining = context.time_remaining()
    # Without a deadline grpc reports a remaining time of about forever.
    return None if remaining is None or remaining > 86400 else float(remaining)


class Refused(Exception):
    """A request the core refuses: ``code`` is its gRPC status, the message says why.

    Front ends other than gRPC (:mod:`cloud_node.rest`) map ``code`` to their own statuses.
    """

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        encoded = message.encode()
        if len(encoded) > _MAX_DETAILS_BYTES:
            message = encoded[:_MAX_DETAILS_BYTES].decode(errors="ignore") + "\u2026"
        super().__init__(message)
        self.code = code


def _status(code: str) -> grpc.StatusCode:
    return grpc.StatusCode[code]


def server_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("edgecut")
    except PackageNotFoundError:
        return "0"


class InferenceService(pb_grpc.GRPCInferenceServiceServicer):
    """ServerLive/Ready, ModelReady, Server/ModelMetadata, ModelInfer, RepositoryIndex."""

    def __init__(
        self,
        store: ModelStore,
        batcher: Batcher,
        metrics: NodeMetrics,
        logger: logging.Logger,
        *,
        max_request_bytes: int,
        max_message_bytes: int | None = None,
        serving: Callable[[], bool],
        in_flight: InFlight,
    ) -> None:
        self._in_flight = in_flight
        self._store = store
        self._batcher = batcher
        self._metrics = metrics
        self._log = logger
        self._max_request_bytes = max_request_bytes
        self._max_message_bytes = max_message_bytes  # of a reply; None: not checked
        self._serving = serving

    # ------------------------------------------------------------------ health-like

    def ServerLive(self, request: pb.ServerLiveRequest, context: Any) -> pb.ServerLiveResponse:
        return pb.ServerLiveResponse(live=True)

    def ServerReady(self, request: pb.ServerReadyRequest, context: Any) -> pb.ServerReadyResponse:
        return pb.ServerReadyResponse(ready=self.server_ready())

    def ModelReady(self, request: pb.ModelReadyRequest, context: Any) -> pb.ModelReadyResponse:
        return pb.ModelReadyResponse(ready=self.model_ready(request.name, request.version))

    def server_ready(self) -> bool:
        """Serving, and every tail of the repository loaded."""
        tails = self._store.tails()
        return self._serving() and bool(tails) and all(t.state == READY for t in tails)

    def model_ready(self, model: str, version: str) -> bool:
        """Serving, and the version asked (``""``: the default) loaded."""
        try:
            self._store.resolve(model, version)
        except EdgecutError:
            return False
        return self._serving()

    def ServerMetadata(
        self, request: pb.ServerMetadataRequest, context: Any
    ) -> pb.ServerMetadataResponse:
        return pb.ServerMetadataResponse(name="edgecut", version=server_version(), extensions=[])

    def ModelMetadata(
        self, request: pb.ModelMetadataRequest, context: Any
    ) -> pb.ModelMetadataResponse:
        try:
            return self.metadata(request.name, request.version)
        except Refused as exc:
            context.abort(exc.code, str(exc))
            raise  # abort raises; this line only tells type checkers

    def metadata(self, model: str, version: str) -> pb.ModelMetadataResponse:
        """The metadata of a model version (``""``: the default); raises :class:`Refused`."""
        tail = self._lookup(*self._asked(model, version), need_ready=False)
        response = pb.ModelMetadataResponse(
            name=tail.model, versions=self._store.versions(tail.model), platform=PLATFORM
        )
        for spec in tail.crossing:
            response.inputs.add(
                name=spec.name,
                datatype=crossing.oip_datatype(spec.dtype),
                shape=crossing.oip_shape(spec),
            )
        for spec in tail.outputs:
            response.outputs.add(
                name=spec.name,
                datatype=crossing.oip_datatype(spec.dtype),
                shape=crossing.oip_shape(spec),
            )
        response.properties["edgecut.version"] = tail.version
        response.properties["edgecut.codec"] = str(tail.manifest.get("codec", "none"))
        response.properties["edgecut.cloud_only"] = str(bool(tail.manifest.get("cloud_only")))
        response.properties["edgecut.max_batch"] = str(tail.max_batch)
        response.properties["edgecut.state"] = tail.state
        return response

    def RepositoryIndex(
        self, request: pb.RepositoryIndexRequest, context: Any
    ) -> pb.RepositoryIndexResponse:
        response = pb.RepositoryIndexResponse()
        for tail in sorted(self._store.tails(), key=lambda t: (t.model, int(t.version))):
            if request.ready and tail.state != READY:
                continue
            response.models.add(
                name=tail.model, version=tail.version, state=tail.state, reason=tail.reason
            )
        return response

    # ----------------------------------------------------------------------- infer

    def ModelInferWire(self, request: bytes, context: Any) -> bytes:
        """ModelInfer on serialized messages: what ``add_inference_service`` registers."""
        try:
            with self._in_flight:
                try:
                    msg, raws = splice.split_request(request)
                except TensorWireError as exc:
                    raise Refused(_status(exc.code), str(exc)) from None
                reply = self._infer(msg, raws, _remaining(context))
                return splice.response_to_wire(reply)
        except Refused as exc:
            context.abort(exc.code, str(exc))
            raise  # abort raises; this line only tells type checkers

    def infer(
        self,
        msg: pb.ModelInferRequest,
        raws: Sequence[bytes | memoryview],
        remaining_s: float | None = None,
    ) -> serde.InferResponse:
        """ModelInfer for other front ends: ``msg`` without its tensors, which are ``raws``
        (one per input, raw little-endian bytes); checked, counted and logged as a gRPC call
        is. Raises :class:`Refused`."""
        with self._in_flight:
            return self._infer(msg, raws, remaining_s)

    def ModelInfer(self, request: pb.ModelInferRequest, context: Any) -> pb.ModelInferResponse:
        """ModelInfer on protobuf objects (when registered by the generated code)."""
        try:
            with self._in_flight:
                raws = list(request.raw_input_contents)
                request.ClearField("raw_input_contents")
                return serde.response_to_proto(self._infer(request, raws, _remaining(context)))
        except Refused as exc:
            context.abort(exc.code, str(exc))
            raise

    def ModelStreamInfer(
        self, request_iterator: Iterator[pb.ModelInferRequest], context: Any
    ) -> Iterator[pb.ModelStreamInferResponse]:
        for request in request_iterator:
            try:
                with self._in_flight:
                    raws = list(request.raw_input_contents)
                    request.ClearField("raw_input_contents")
                    reply = serde.response_to_proto(self._infer(request, raws, None))
                yield pb.ModelStreamInferResponse(infer_response=reply)
            except Refused as exc:
                yield pb.ModelStreamInferResponse(error_message=f"{exc.code.name}: {exc}")

    def _asked(self, model: str, version: str) -> tuple[str, str]:
        """The model and version a request names, clipped unless the repository serves them.

        A long name the store does not hold is unknown whatever follows its first characters,
        so the store is asked for the clipped name and its NOT_FOUND echoes no more than that.
        """
        if len(model) > ECHO_CHARS and model not in self._store.models():
            model = clip(model)
        if len(version) > ECHO_CHARS and version not in self._store.versions(model):
            version = clip(version)
        return model, version

    def _series(self, model: str, version: str) -> dict[str, str]:
        """Metric labels of a request: the served model and version it names, else UNKNOWN."""
        try:
            tail = self._store.find(model, version)
        except NotFound:
            return {
                "model": model if model in self._store.models() else UNKNOWN,
                "version": UNKNOWN,
            }
        return {"model": tail.model, "version": tail.version}

    def _lookup(self, model: str, version: str, *, need_ready: bool = True) -> Tail:
        try:
            if not need_ready:
                return self._store.find(model, version)
            if not self._serving():
                raise Unavailable("the server is shutting down")
            return self._store.resolve(model, version)
        except NotFound as exc:
            raise Refused(grpc.StatusCode.NOT_FOUND, str(exc)) from None
        except Unavailable as exc:
            raise Refused(grpc.StatusCode.UNAVAILABLE, str(exc)) from None

    def _infer(
        self,
        msg: pb.ModelInferRequest,
        raws: Sequence[bytes | memoryview],
        remaining_s: float | None,
    ) -> serde.InferResponse:
        started = time.monotonic()
        model, version = self._asked(msg.model_name, msg.model_version)
        self._metrics.in_flight.inc()
        try:
            tail = self._lookup(model, version)
            labels = {"model": tail.model, "version": tail.version}
            response, frames = self._infer_tail(tail, msg, raws, remaining_s)
        except Refused as exc:
            labels = self._series(model, version)
            self._count(labels, exc.code, started)
            log_event(
                self._log,
                "request_failed",
                logging.WARNING,
                model=model,
                version=version if labels["version"] == UNKNOWN else labels["version"],
                id=clip(msg.id),
                code=exc.code.name,
                message=str(exc),
            )
            raise
        finally:
            self._metrics.in_flight.dec()
        self._count(labels, grpc.StatusCode.OK, started)
        self._metrics.frames.labels(**labels).inc(frames)
        return response

    def _count(self, labels: dict[str, str], code: grpc.StatusCode, started: float) -> None:
        self._metrics.requests.labels(code=code.name, **labels).inc()
        if code != grpc.StatusCode.OK:
            self._metrics.errors.labels(code=code.name).inc()
        else:
            self._metrics.request_seconds.labels(**labels).observe(time.monotonic() - started)

    def _infer_tail(
        self,
        tail: Tail,
        msg: pb.ModelInferRequest,
        raws: Sequence[bytes | memoryview],
        remaining_s: float | None,
    ) -> tuple[serde.InferResponse, int]:
        started = time.monotonic()
        where = f"model {tail.model!r} version {tail.version}"
        specs = tail.crossing
        try:
            declared = [
                crossing.WireTensor(
                    t.name,
                    arrays.dtype_of(t.datatype, name=t.name, role="input"),
                    tuple(int(d) for d in t.shape),
                    serde.parameters_from_proto(t.parameters),
                )
                for t in msg.inputs
            ]
            batch = crossing.check_inputs(declared, specs, max_batch=tail.max_batch, where=where)
            decoded_bytes = batch * sum(s.bytes for s in specs)
            if decoded_bytes > self._max_request_bytes:
                raise crossing.CrossingError(
                    f"batch {batch} decodes to {decoded_bytes} bytes, above this server's "
                    f"limit of {self._max_request_bytes} bytes per request",
                    code="RESOURCE_EXHAUSTED",
                )
            outputs_wanted = self._requested_outputs(tail, tuple(o.name for o in msg.outputs))
            wanted = set(outputs_wanted or (s.name for s in tail.outputs))
            reply_bytes = batch * sum(s.bytes for s in tail.outputs if s.name in wanted)
            if self._max_message_bytes is not None and reply_bytes > self._max_message_bytes:
                raise crossing.CrossingError(
                    f"batch {batch} answers with {reply_bytes} bytes of outputs, above this "
                    f"server's message limit of {self._max_message_bytes} bytes",
                    code="RESOURCE_EXHAUSTED",
                )
        except (TensorWireError, crossing.CrossingError) as exc:
            raise Refused(_status(exc.code), str(exc)) from None

        # Room in the queue is held before anything is decoded: a request the queue cannot
        # take now (or ever) is refused on its declared batch, its payload never decompressed.
        with self._reserve(batch) as reservation:
            try:
                request = serde.request_from_parts(msg, raws, max_bytes=self._max_request_bytes)
                inputs = crossing.decode_inputs(request.inputs, request.input_parameters, specs)
            except (TensorWireError, crossing.CrossingError) as exc:
                raise Refused(_status(exc.code), str(exc)) from None
            try:
                future = self._batcher.submit(
                    tail,
                    inputs,
                    tail.run,
                    max_batch=tail.max_batch,
                    reservation=reservation,
                    stacking=tail.stacking,
                )
            except BatcherClosed as exc:
                raise Refused(grpc.StatusCode.UNAVAILABLE, str(exc)) from None
        try:
            result = future.result(timeout=remaining_s)
        except FutureTimeout:
            raise Refused(
                grpc.StatusCode.DEADLINE_EXCEEDED, f"{where}: the deadline passed in the queue"
            ) from None
        except BatcherClosed as exc:
            raise Refused(grpc.StatusCode.UNAVAILABLE, str(exc)) from None
        except Exception as exc:
            log_event(self._log, "tail_failed", logging.ERROR, model=tail.model, error=repr(exc))
            raise Refused(
                grpc.StatusCode.INTERNAL, f"{where}: the tail failed: {type(exc).__name__}: {exc}"
            ) from None
        labels = {"model": tail.model, "version": tail.version}
        self._metrics.queue_seconds.labels(**labels).observe(result.queue_s)

        names = [s.name for s in tail.outputs]
        by_name = dict(zip(names, result.outputs, strict=True))
        chosen = outputs_wanted or names
        response = serde.InferResponse(
            model_name=tail.model,
            model_version=tail.version,
            id=msg.id,
            outputs={name: np.ascontiguousarray(by_name[name]) for name in chosen},
            parameters={
                crossing.QUEUE_MS_PARAM: result.queue_s * 1e3,
                crossing.COMPUTE_MS_PARAM: result.compute_s * 1e3,
                crossing.BATCH_FRAMES_PARAM: result.batch_frames,
                crossing.SERVER_MS_PARAM: (time.monotonic() - started) * 1e3,
            },
        )
        return response, batch

    def _reserve(self, frames: int) -> Reservation:
        try:
            return self._batcher.reserve(frames)
        except BatchTooLarge as exc:
            raise Refused(grpc.StatusCode.RESOURCE_EXHAUSTED, str(exc)) from None
        except QueueFull as exc:
            raise Refused(grpc.StatusCode.RESOURCE_EXHAUSTED, f"server busy: {exc}") from None
        except BatcherClosed as exc:
            raise Refused(grpc.StatusCode.UNAVAILABLE, str(exc)) from None

    @staticmethod
    def _requested_outputs(tail: Tail, requested: tuple[str, ...]) -> list[str]:
        names = [s.name for s in tail.outputs]
        unknown = [n for n in requested if n not in names]
        if unknown:
            raise crossing.CrossingError(
                f"requested output {clip(unknown[0])!r} does not exist: model {tail.model!r} "
                f"version {tail.version} has outputs {names}"
            )
        return list(requested)


_HANDLERS = {
    (False, False): grpc.unary_unary_rpc_method_handler,
    (False, True): grpc.unary_stream_rpc_method_handler,
    (True, False): grpc.stream_unary_rpc_method_handler,
    (True, True): grpc.stream_stream_rpc_method_handler,
}


def add_inference_service(servicer: InferenceService, server: grpc.Server) -> None:
    """Register ``servicer`` as ``inference.GRPCInferenceService`` on ``server``.

    Like the generated ``add_GRPCInferenceServiceServicer_to_server``, except that
    ModelInfer takes and returns bytes: its tensors are spliced onto the message
    (``protos.splice.split_request`` / ``response_to_wire``) instead of being copied
    through protobuf objects. The bytes on the wire are the same protobuf encoding.
    """
    service = pb.DESCRIPTOR.services_by_name["GRPCInferenceService"]
    handlers = {}
    for method in service.methods:
        factory = _HANDLERS[(method.client_streaming, method.server_streaming)]
        handlers[method.name] = factory(
            getattr(servicer, method.name),
            request_deserializer=getattr(pb, method.input_type.name).FromString,
            response_serializer=getattr(pb, method.output_type.name).SerializeToString,
        )
    handlers["ModelInfer"] = grpc.unary_unary_rpc_method_handler(servicer.ModelInferWire)
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(service.full_name, handlers),)
    )
    server.add_registered_method_handlers(service.full_name, handlers)
