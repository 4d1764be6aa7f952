"""The Open Inference Protocol over HTTP/REST (KServe v2), beside the node's gRPC service.

    server = RestServer(build_app(inference, tokens=..., max_body_bytes=...), host, port, tls)
    port = server.start()        # uvicorn in a thread; 0 picks a port
    server.stop(grace_s=5)

Every request becomes the same call the gRPC service answers (:class:`InferenceService`'s
``infer``, ``metadata``, ``model_ready``, ``server_ready``): an infer body (JSON tensors, or the
binary tensor data extension's JSON header plus raw bytes) is turned into a tensor-less
``ModelInferRequest`` and one raw buffer per input, so validation, limits, batching, metrics
and logs are the gRPC path's own. A body is refused above its limit before it is read in full;
``/v2/health/*`` is open, everything else needs a bearer token when the node has tokens.
Errors are ``{"error": "<one line>"}`` with the gRPC status mapped to an HTTP one.
"""

from __future__ import annotations

import json
import logging
import math
import socket
import threading
from collections.abc import Iterable, Mapping
from typing import Any

import grpc
import numpy as np
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from cloud_node.inference import InferenceService, Refused
from protos import arrays, serde, transport
from protos.errors import TensorWireError, clip
from protos.inference import grpc_service_pb2 as pb

# The binary tensor data extension: the JSON part's length, and the parameters that mark a
# tensor as binary (inputs and outputs) or ask for binary outputs (one output, or all).
HEADER_LENGTH = "Inference-Header-Content-Length"
BINARY_SIZE = "binary_data_size"
BINARY_OUTPUT = "binary_data"
BINARY_OUTPUTS = "binary_data_output"
EXTENSIONS = ("binary_tensor_data",)

# gRPC status -> HTTP status, as Triton's HTTP endpoint and google.rpc's mapping do it.
HTTP_STATUS = {
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
}


class HttpError(Exception):
    """A refusal of the REST front end itself (before the core sees the request)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _error(status: int, message: str) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse({"error": " ".join(message.split())}, status_code=status, headers=headers)


# ------------------------------------------------------------------ body -> domain request


def _object(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise HttpError(400, f"{what}: expected a JSON object, got {type(value).__name__}")
    return value


def _parameters(value: Any, what: str) -> dict[str, serde.ParamValue]:
    params = _object(value if value is not None else {}, f"{what} parameters")
    for key, item in params.items():
        if not isinstance(item, bool | int | float | str):
            raise HttpError(
                400, f"{what} parameter {clip(key)!r}: expected a bool, number or string"
            )
    return params


def _set_parameters(values: dict[str, serde.ParamValue], target: Any, what: str) -> None:
    try:
        serde.parameters_to_proto(values, target)
    except ValueError as exc:  # an integer beyond 64 bits
        raise HttpError(400, f"{what} parameters: {exc}") from None


def _json_tensor(data: Any, datatype: str, shape: tuple[int, ...], name: str) -> bytes:
    """A tensor's JSON ``data`` (flat or nested, row-major) as raw little-endian bytes."""
    dtype = arrays.dtype_of(datatype, name=name, role="input")
    try:
        array = np.asarray(data, dtype=dtype)
    except (TypeError, ValueError, OverflowError) as exc:
        raise HttpError(400, f"input {clip(name)!r}: data is not {datatype}: {exc}") from None
    if array.size != math.prod(shape):
        raise HttpError(
            400,
            f"input {clip(name)!r}: shape {list(shape)} holds {math.prod(shape)} elements, "
            f"data has {array.size}",
        )
    return array.tobytes()


def parse_infer(
    body: bytes, header_length: int | None, model: str, version: str
) -> tuple[pb.ModelInferRequest, list[memoryview], bool, set[str]]:
    """An infer body -> (request without tensors, one raw buffer per input, all outputs
    binary, names of outputs asked for as binary)."""
    data = memoryview(body)
    if header_length is None:
        header_length = len(data)
    elif not 0 <= header_length <= len(data):
        raise HttpError(
            400, f"{HEADER_LENGTH} is {header_length}; the body has only {len(data)} bytes"
        )
    try:
        document = json.loads(bytes(data[:header_length]))
    except (UnicodeDecodeError, ValueError) as exc:
        raise HttpError(400, f"the request is not valid JSON: {exc}") from None
    document = _object(document, "the request")
    msg = pb.ModelInferRequest(model_name=model, model_version=version)
    request_id = document.get("id", "")
    if not isinstance(request_id, str):
        raise HttpError(400, "id: expected a string")
    msg.id = request_id
    request_params = _parameters(document.get("parameters"), "request")
    all_binary = bool(request_params.pop(BINARY_OUTPUTS, False))
    _set_parameters(request_params, msg.parameters, "request")
    inputs = document.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise HttpError(400, "inputs: expected a non-empty list of tensors")
    raws: list[memoryview] = []
    offset = header_length
    for i, item in enumerate(inputs):
        tensor = _object(item, f"inputs[{i}]")
        name, datatype, shape = tensor.get("name"), tensor.get("datatype"), tensor.get("shape")
        if not isinstance(name, str) or not isinstance(datatype, str):
            raise HttpError(400, f"inputs[{i}]: expected string 'name' and 'datatype'")
        if not isinstance(shape, list) or not all(
            isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape
        ):
            raise HttpError(400, f"input {clip(name)!r}: shape must be a list of integers >= 0")
        params = _parameters(tensor.get("parameters"), f"input {clip(name)!r}")
        size = params.pop(BINARY_SIZE, None)
        if size is not None:
            if not isinstance(size, int) or isinstance(size, bool) or size < 0:
                raise HttpError(400, f"input {clip(name)!r}: {BINARY_SIZE} must be an integer >= 0")
            if offset + size > len(data):
                raise HttpError(
                    400,
                    f"input {clip(name)!r}: {BINARY_SIZE} {size} runs past the body's end "
                    f"({len(data) - offset} bytes left)",
                )
            raws.append(data[offset : offset + size])
            offset += size
        elif "data" in tensor:
            raws.append(memoryview(_json_tensor(tensor["data"], datatype, tuple(shape), name)))
        else:
            raise HttpError(400, f"input {clip(name)!r}: expected 'data' or {BINARY_SIZE}")
        entry = msg.inputs.add(name=name, datatype=datatype, shape=shape)
        _set_parameters(params, entry.parameters, f"input {clip(name)!r}")
    if offset != len(data):
        raise HttpError(400, f"the body has {len(data) - offset} bytes after the last binary input")
    binary: set[str] = set()
    outputs = document.get("outputs") or []
    if not isinstance(outputs, list):
        raise HttpError(400, "outputs: expected a list")
    for i, item in enumerate(outputs):
        output = _object(item, f"outputs[{i}]")
        name = output.get("name")
        if not isinstance(name, str):
            raise HttpError(400, f"outputs[{i}]: expected a string 'name'")
        params = _parameters(output.get("parameters"), f"output {clip(name)!r}")
        if params.pop(BINARY_OUTPUT, all_binary):
            binary.add(name)
        msg.outputs.add(name=name)
    return msg, raws, all_binary, binary


def render_infer(
    response: serde.InferResponse, all_binary: bool, binary: set[str]
) -> tuple[bytes, int | None]:
    """An InferResponse -> (body, JSON header length if any output travels binary)."""
    outputs, blobs = [], []
    for name, array in response.outputs.items():
        datatype, shape, raw = arrays.array_to_raw(array, name=name, role="output")
        entry: dict[str, Any] = {"name": name, "datatype": datatype, "shape": shape}
        if all_binary or name in binary:
            entry["parameters"] = {BINARY_SIZE: len(raw)}
            blobs.append(raw)
        else:
            entry["data"] = array.reshape(-1).tolist()
        outputs.append(entry)
    document = {
        "model_name": response.model_name,
        "model_version": response.model_version,
        "id": response.id,
        "parameters": dict(response.parameters),
        "outputs": outputs,
    }
    header = json.dumps(document, separators=(",", ":")).encode()
    if not blobs:
        return header, None
    return b"".join([header, *blobs]), len(header)


def metadata_json(meta: pb.ModelMetadataResponse) -> dict[str, Any]:
    def tensors(items: Iterable[Any]) -> list[dict[str, Any]]:
        return [{"name": t.name, "datatype": t.datatype, "shape": list(t.shape)} for t in items]

    return {
        "name": meta.name,
        "versions": list(meta.versions),
        "platform": meta.platform,
        "inputs": tensors(meta.inputs),
        "outputs": tensors(meta.outputs),
        "parameters": dict(meta.properties),
    }


# ----------------------------------------------------------------------------- the app


async def read_body(request: Request, limit_bytes: int, limit_name: str) -> bytes:
    """The body, refused with 413 as soon as it is known to pass ``limit_bytes``."""
    too_big = f"above this server's limit of {limit_bytes} bytes per request ({limit_name})"
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit_bytes:
        raise HttpError(413, f"request body of {int(declared)} bytes is {too_big}")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit_bytes:
            raise HttpError(413, f"request body is {too_big}")
    return bytes(body)


def build_app(
    inference: InferenceService,
    *,
    tokens: tuple[str, ...] = (),
    max_body_bytes: int,
    max_body_name: str = "max_request_bytes",
    server_version: str = "0",
) -> FastAPI:
    """The KServe v2 REST endpoints over ``inference``; see the module docstring."""
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    auth = transport.BearerTokenAuth(tokens) if tokens else None

    def authorize(request: Request) -> None:
        if auth is None:
            return
        header = request.headers.get("authorization")
        # The gRPC interceptor's own check: one rule for both front ends.
        reason = auth.check([] if header is None else [("authorization", header)])
        if reason is not None:
            raise HttpError(401, reason)

    @app.exception_handler(HttpError)
    async def on_http_error(_request: Request, exc: HttpError) -> JSONResponse:
        return _error(exc.status, str(exc))

    @app.exception_handler(Refused)
    async def on_refused(_request: Request, exc: Refused) -> JSONResponse:
        return _error(HTTP_STATUS.get(exc.code, 500), str(exc))

    @app.exception_handler(TensorWireError)
    async def on_wire_error(_request: Request, exc: TensorWireError) -> JSONResponse:
        return _error(HTTP_STATUS.get(grpc.StatusCode[exc.code], 400), str(exc))

    @app.exception_handler(StarletteHTTPException)
    async def on_starlette(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return _error(exc.status_code, str(exc.detail))

    def _ready(ready: bool) -> Response:
        # KServe v2: 200 when ready, else a failure status; the body says which, too.
        return JSONResponse({"ready": ready}, status_code=200 if ready else 503)

    @app.get("/v2/health/live")
    async def live() -> Response:
        return JSONResponse({"live": True})

    @app.get("/v2/health/ready")
    async def ready() -> Response:
        return _ready(inference.server_ready())

    @app.get("/v2")
    async def server_metadata(request: Request) -> Response:
        authorize(request)
        return JSONResponse(
            {"name": "edgecut", "version": server_version, "extensions": list(EXTENSIONS)}
        )

    @app.get("/v2/models/{model}/ready")
    @app.get("/v2/models/{model}/versions/{version}/ready")
    async def model_ready(request: Request, model: str, version: str = "") -> Response:
        authorize(request)
        return _ready(inference.model_ready(model, version))

    @app.get("/v2/models/{model}")
    @app.get("/v2/models/{model}/versions/{version}")
    async def model_metadata(request: Request, model: str, version: str = "") -> Response:
        authorize(request)
        return JSONResponse(metadata_json(inference.metadata(model, version)))

    @app.post("/v2/models/{model}/infer")
    @app.post("/v2/models/{model}/versions/{version}/infer")
    async def infer(request: Request, model: str, version: str = "") -> Response:
        authorize(request)
        header = request.headers.get(HEADER_LENGTH)
        if header is not None and not header.isdigit():
            raise HttpError(400, f"{HEADER_LENGTH} must be a byte count, got {clip(header)!r}")
        body = await read_body(request, max_body_bytes, max_body_name)
        # Parsing, the batch wait and encoding block: a worker thread, not the event loop.
        content, header_length = await run_in_threadpool(
            _infer_sync, inference, body, None if header is None else int(header), model, version
        )
        if header_length is None:
            return Response(content, media_type="application/json")
        return Response(
            content,
            media_type="application/octet-stream",
            headers={HEADER_LENGTH: str(header_length)},
        )

    return app


def _infer_sync(
    inference: InferenceService, body: bytes, header_length: int | None, model: str, version: str
) -> tuple[bytes, int | None]:
    msg, raws, all_binary, binary = parse_infer(body, header_length, model, version)
    return render_infer(inference.infer(msg, raws), all_binary, binary)


# ---------------------------------------------------------------------------- the server


def bind(host: str, port: int) -> socket.socket:
    """A listening-ready TCP socket on ``host:port`` (0 picks a port)."""
    bare = host.strip("[]")
    family = socket.AF_INET6 if ":" in bare else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((bare, port))
    except OSError:
        sock.close()
        raise
    return sock


class RestServer:
    """uvicorn serving ``app`` on a socket bound at construction, in a daemon thread."""

    def __init__(
        self,
        app: FastAPI,
        sock: socket.socket,
        tls: transport.ServerTLS | None = None,
        *,
        logger: logging.Logger | None = None,
    ) -> None:
        import ssl

        self._sock = sock
        tls_options: Mapping[str, Any] = {}
        if tls is not None:
            tls_options = {
                "ssl_certfile": str(tls.cert_file),
                "ssl_keyfile": str(tls.key_file),
                "ssl_ca_certs": str(tls.client_ca_file) if tls.client_ca_file else None,
                "ssl_cert_reqs": ssl.CERT_REQUIRED if tls.client_ca_file else ssl.CERT_NONE,
            }
        config = uvicorn.Config(
            app,
            lifespan="off",
            log_config=None,  # the node's JSON-line logging stays as configured
            log_level=logging.WARNING,
            access_log=False,
            server_header=False,
            **tls_options,
        )
        self._server = uvicorn.Server(config)
        self._thread: threading.Thread | None = None
        self.port = int(sock.getsockname()[1])

    def start(self, timeout_s: float = 30.0) -> int:
        """Serve in a thread; returns the port once uvicorn accepts connections."""
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._sock]}, name="rest", daemon=True
        )
        self._thread.start()
        while not self._server.started:
            self._thread.join(0.01)
            if not self._thread.is_alive():
                raise OSError("the HTTP server stopped while starting")
            timeout_s -= 0.01
            if timeout_s <= 0:
                raise OSError("the HTTP server did not start in time")
        return self.port

    def stop(self, grace_s: float = 5.0) -> None:
        """Stop accepting, let running requests finish for up to ``grace_s``, close."""
        self._server.config.timeout_graceful_shutdown = max(1, math.ceil(grace_s))
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(grace_s + 5.0)
        self._sock.close()
