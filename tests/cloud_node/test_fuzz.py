"""Hostile ModelInfer requests against the cloud node's decode-and-validate path, property-tested.

The property: every request a client can send either decodes into exactly the crossing tensors
of the cut's manifest (its dtypes and shapes, one batch within the limits), or is refused with
one of the project's own errors (TensorWireError, EdgecutError and its subclasses such as
CrossingError, the batcher's queue limits) as a one-line status; nothing else escapes, and no
request makes the node allocate more than a bound set by its message size and the server's
per-request limit. Hangs are left to pytest's timeout.

Requests start valid (every registered codec, a chain cut and a cut two tensors cross) and are
mutated structurally (datatypes; shapes with huge, negative or zero dimensions; raw contents of
the wrong size or count; lying codec parameters and stage headers; companions missing or
duplicated; invented and huge names; decompression bombs) or byte by byte; random bytes and
protobuf-shaped noise stand in for the message itself.

They go through ``InferenceService.ModelInferWire``, the handler a node registers for ModelInfer,
over a real ModelStore and Batcher: protos.splice, serde and partitioner.deploy.crossing called as
the node calls them, without the network. ``benchmarks/fuzz.py`` runs this same property on
10,000+ cases and sends thousands of them to a node over gRPC.
"""

from __future__ import annotations

import functools
import logging
import math
import re
import struct
import sys
import time
import traceback
import tracemalloc
from collections.abc import Callable, Hashable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cloud_node.batcher import Batcher, BatcherClosed, BatchTooLarge, QueueFull
from cloud_node.inference import InferenceService, InFlight
from cloud_node.metrics import NodeMetrics
from cloud_node.models import ModelStore
from partitioner.codecs import CODECS
from partitioner.deploy import crossing
from partitioner.errors import EdgecutError
from partitioner.model.graph import TensorSpec
from protos import arrays, serde, splice, transport
from protos.errors import TensorWireError
from protos.inference import grpc_service_pb2 as pb

# The decoded inputs one request may hold in the harness (CloudConfig's default is 256 MiB): small,
# so that the memory bound below tells a lie believed from one refused before it is decoded.
MAX_REQUEST_BYTES = 1024 * 1024
# What a request may allocate on top of a few copies of its message and of its decoded limit:
# protobuf objects, metrics, a log line, the tail's outputs.
MEMORY_SLACK_BYTES = 4 * 1024 * 1024
# The statuses a refusal may carry. INTERNAL (the tail failed on inputs that passed validation),
# UNKNOWN, UNAVAILABLE and DEADLINE_EXCEEDED all mean the validation let something through.
REFUSAL_CODES = frozenset({"INVALID_ARGUMENT", "RESOURCE_EXHAUSTED", "NOT_FOUND"})
# The project's error types: what validation raises before the handler turns it into a status.
PROJECT_ERRORS = (TensorWireError, EdgecutError, QueueFull, BatchTooLarge, BatcherClosed)
# decode_inputs wraps whatever a codec raises on a bad payload: "...: ValueError: ...".
_WRAPPED = re.compile(r"payload does not decode to [^:]*: (\w+): ")

# The repository: digits_cnn cut after pool2 (128x2x2) and after relu1 (32x8x8), one tensor
# each; resnet18 at 32x32 cut inside its first residual block, crossed by maxpool and
# layer1.0.relu1 (64x8x8 each). About ten seconds to export on 2 cores.
CUTS = {"digits_cnn": (None, ("pool2", "relu1")), "resnet18": ((1, 3, 32, 32), ("layer1.0.relu1",))}


def build_fuzz_repository(root: Path) -> Path:
    """The repository the fuzz serves (see CUTS), written under ``root``."""
    from partitioner.planner import Planner
    from partitioner.publish import build_repository

    for model, (input_shape, cuts) in CUTS.items():
        planner = Planner.create(model, input_shape=input_shape)
        plans = [planner.cut_after(cut) for cut in cuts]
        build_repository(planner, root, plans=plans, with_local=False)
    return root


# ------------------------------------------------------------------------------ harness


@dataclass(frozen=True)
class Target:
    """One served cut, as a client sees it."""

    model: str
    version: str
    crossing: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    max_batch: int


@dataclass
class Outcome:
    """What became of one request."""

    kind: str  # "answered" | "refused" | "crashed"
    code: str = ""  # the gRPC status of a refusal
    message: str = ""
    error: str = ""  # the class behind a refusal, or the class that escaped
    error_type: type | None = None
    decoded: list[np.ndarray] | None = None  # what the batcher was handed (torch's inputs)
    reply: bytes | None = None
    traceback: str = ""
    peak_bytes: int = 0  # traced allocation peak during the call, above what was live before
    seconds: float = 0.0


class Refused(Exception):
    """Raised by the harness's gRPC context on abort: the status and the error behind it."""

    def __init__(self, code: grpc.StatusCode, details: str, cause: BaseException | None) -> None:
        super().__init__(f"{code.name}: {details}")
        self.code = code
        self.details = details
        self.cause = cause


class _Context:
    """The part of grpc.ServicerContext that ModelInferWire uses: no deadline, and abort."""

    def time_remaining(self) -> float | None:
        return None

    def abort(self, code: grpc.StatusCode, details: str) -> None:
        # The handler aborts while handling its Refused, raised `from None` while handling the
        # error that validation raised: that error is the Refused's __context__.
        handled = sys.exc_info()[1]
        raise Refused(code, details, handled.__context__ if handled is not None else None)


class RecordingBatcher(Batcher):
    """The node's Batcher, keeping the decoded inputs it was last handed: what torch sees."""

    last_inputs: list[np.ndarray] | None = None

    def submit(self, key: Hashable, inputs: Sequence[np.ndarray], *args: Any, **kw: Any) -> Any:
        self.last_inputs = list(inputs)
        return super().submit(key, inputs, *args, **kw)


class Harness:
    """The cloud node's ModelInfer handler in process, over every tail of ``root``, built as
    ``cloud_node.server.CloudNode.start`` builds it (limits aside: see MAX_REQUEST_BYTES)."""

    def __init__(self, root: Path, *, max_request_bytes: int = MAX_REQUEST_BYTES) -> None:
        store = ModelStore(root)
        store.load_all()
        self.store = store
        self.targets = [
            Target(t.model, t.version, tuple(t.crossing), tuple(t.outputs), t.max_batch)
            for t in sorted(store.tails(), key=lambda t: (t.model, int(t.version)))
        ]
        # CloudConfig's defaults, except no batch timeout: a lone request runs inline.
        self.batcher = RecordingBatcher(max_batch=16, timeout_s=0.0, max_queue_frames=1024)
        log = logging.getLogger("edgecut.fuzz")
        log.addHandler(logging.NullHandler())
        log.propagate = False  # the node logs every refusal; here they are counted instead
        self.max_request_bytes = max_request_bytes
        self.service = InferenceService(
            store,
            self.batcher,
            NodeMetrics(),
            log,
            max_request_bytes=max_request_bytes,
            max_message_bytes=transport.DEFAULT_MAX_MESSAGE_BYTES,  # CloudConfig's default
            serving=lambda: True,
            in_flight=InFlight(),
        )

    def close(self) -> None:
        self.batcher.close(drain=False, timeout_s=5.0)

    def call(self, data: bytes) -> Outcome:
        self.batcher.last_inputs = None
        # Tracing only during the call: it slows every allocation, the generator's included.
        tracing = tracemalloc.is_tracing()
        if tracing:
            tracemalloc.reset_peak()
        else:
            tracemalloc.start()
        live = tracemalloc.get_traced_memory()[0]
        started = time.perf_counter()
        try:
            reply = self.service.ModelInferWire(data, _Context())
            outcome = Outcome("answered", reply=reply)
        except Refused as exc:
            cause = exc.cause
            outcome = Outcome(
                "refused",
                code=exc.code.name,
                message=exc.details,
                error=type(cause).__name__ if cause is not None else "status only",
                error_type=type(cause) if cause is not None else None,
            )
        except Exception as exc:
            outcome = Outcome(
                "crashed",
                message=str(exc),
                error=type(exc).__name__,
                error_type=type(exc),
                traceback=traceback.format_exc(),
            )
        outcome.seconds = time.perf_counter() - started
        outcome.peak_bytes = tracemalloc.get_traced_memory()[1] - live
        if not tracing:
            tracemalloc.stop()
        outcome.decoded = self.batcher.last_inputs
        return outcome

    def target(self, model: str, version: str) -> Target | None:
        """The cut a request for ``model`` and ``version`` ("": the default) reaches, if any."""
        try:
            tail = self.store.find(model, version)
        except EdgecutError:
            return None
        return next(t for t in self.targets if (t.model, t.version) == (tail.model, tail.version))


# ------------------------------------------------------------------------------ requests


@dataclass
class Case:
    """One request as bytes, how it was made, and what a valid one must decode to."""

    data: bytes
    target: Target
    steps: list[str] = field(default_factory=list)  # "valid", "codec:int8", "shape", ...
    expected: list[np.ndarray] | None = None  # unmutated valid requests only

    @property
    def kind(self) -> str:
        return self.steps[0]


_EDGE_DIMS = [
    0, 1, 2, 3, 8, 32, 64, 128, 4096, 4097, 2**31 - 1, 2**31, 2**32 + 1, 2**53, 2**62,
    2**63 - 1, -1, -2, -(2**31), -(2**63),
]  # fmt: skip
dims = st.one_of(st.sampled_from(_EDGE_DIMS), st.integers(-(2**63), 2**63 - 1))
shapes = st.one_of(
    st.lists(dims, max_size=6),
    st.lists(st.sampled_from([1, 2]), min_size=60, max_size=70),  # around numpy's 64
    st.integers(100, 100_000).map(lambda n: [1] * n),  # a rank no tensor has
)
datatypes = st.one_of(
    st.sampled_from([*arrays.DATATYPES, "BYTES", "BF16", "", "fp32", "FP32 ", "FP8"]),
    st.text(max_size=8),
)
huge_text = st.integers(10, 20).map(lambda k: "n" * (1 << k))  # 1 KiB .. 1 MiB
param_values = st.one_of(
    st.text(max_size=24),
    st.integers(-(2**63), 2**64 - 1),
    st.booleans(),
    st.floats(),
    huge_text,
)
shape_params = st.one_of(
    st.lists(dims, max_size=6).map(lambda ds: ",".join(map(str, ds))),
    st.text(alphabet="0123456789,- +_", max_size=40),
    st.sampled_from(["", ",", "1,,64,8,8", "1e3,64,8,8", "0x10,64,8,8", "\u0661,32,8,8"]),
    st.integers(10, 16).map(lambda k: "1," * (1 << k)),
    param_values,
)
wire_dtypes = st.one_of(
    st.sampled_from(
        ["float32", "float16", "float64", "int8", "uint8", "int16", "uint16", "int32", "int64"]
    ),
    st.sampled_from(["bool", "complex64", "object", "U8", "V8", "<f4", ">f4", "float128", ""]),
    param_values,
)


def names(target: Target) -> st.SearchStrategy[str]:
    known = [s.name for s in target.crossing]
    close = [crossing.companion_name(n, p) for n in known for p in ("scale", "zero_point", "x")]
    return st.one_of(
        st.sampled_from([*known, *close, "", "#", "#scale", f"{known[0]}#scale#scale"]),
        st.text(max_size=16),
        huge_text,
    )


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _set_param(params: Any, key: str, value: object) -> None:
    """Set one entry of a protobuf parameters map to a value of any type."""
    param = params[key]
    param.Clear()
    if isinstance(value, bool):
        param.bool_param = value
    elif isinstance(value, int):
        if value > 2**63 - 1:
            param.uint64_param = value
        else:
            param.int64_param = value
    elif isinstance(value, float):
        param.double_param = value
    else:
        param.string_param = str(value)


@functools.cache
def _bombs() -> dict[str, bytes]:
    """Compressed streams far larger decompressed than any tensor here (made once)."""
    import lz4.block
    import zstandard

    zeros = bytes(64 * 1024 * 1024)
    sized = zstandard.ZstdCompressor(level=1, write_content_size=True)
    unsized = zstandard.ZstdCompressor(level=1, write_content_size=False)
    return {
        "zstd-sized": sized.compress(zeros),
        "zstd-unsized": unsized.compress(zeros),
        "zstd-window": zstandard.ZstdCompressor(
            compression_params=zstandard.ZstdCompressionParameters(window_log=27)
        ).compress(zeros),
        "lz4": lz4.block.compress(zeros[: 16 * 1024 * 1024], store_size=False),
    }


# Structured mutations: each changes one thing about a protobuf request and names it.
Mutation = Callable[[st.DrawFn, pb.ModelInferRequest, Target], str]


def _index(draw: st.DrawFn, msg: pb.ModelInferRequest) -> int | None:
    return draw(st.integers(0, len(msg.inputs) - 1)) if len(msg.inputs) else None


def m_datatype(draw: st.DrawFn, msg: pb.ModelInferRequest, target: Target) -> str:
    if (i := _index(draw, msg)) is not None:
        msg.inputs[i].datatype = draw(datatypes)
    return "datatype"


def m_shape(draw: st.DrawFn, msg: pb.ModelInferRequest, target: Target) -> str:
    if (i := _index(draw, msg)) is not None:
        del msg.inputs[i].shape[:]
        msg.inputs[i].shape.extend(draw(shapes))
    return "shape"


def m_dim(draw: st.DrawFn, msg: pb.ModelInferRequest, target: Target) -> str:
    """One dimension off: the batch or a feature dimension, by one or by far."""
    i = _index(draw, msg)
    if i is not None and len(msg.inputs[i].shape):
        shape = msg.inputs[i].shape
        d = draw(st.integers(0, len(shape) - 1))
        shape[d] = draw(st.one_of(st.sampled_from(_EDGE_DIMS), st.just(shape[d] + 1)))
    return "dim"


def m_raw_size(draw: st.DrawFn, msg: pb.ModelInferRequest, target: Target) -> str:
    raws = msg.raw_input_contents
    if len(raws):
        i = draw(st.integers(0, len(raws) - 1))
        raw = raws[i]
        how = draw(st.sampled_from(["cut", "grow", "empty", "one"]))
        raws[i] = {
            "cut": raw[: draw(st.integers(0, max(len(raw) - 1, 0)))],
            "grow": raw + draw(st.binary(min_size=1, max_size=64)),
            "empty": b"",
            "one": raw[:1],
        }[how]
    return "raw_size"


def m_raw_count(draw: st.DrawFn, msg: pb.ModelInferRequest, target: Target) -> str:
    raws = msg.raw_input_contents
    how = draw(st.sampled_from(["drop", "extra", "duplicate", "clear"]))
    if how == "drop" and len(raws):
        del raws[-1]
    elif how == "extra":
        raws.append(draw(st.binary(max_size=64)))
    elif how == "duplicate" and len(raws):
        raws.append(raws[draw(st.integers(0, len(raws) - 1))])
    elif how == "clear":
        del raws[:]
    return "raw_count"


def m_typed_contents(draw: st.DrawFn, msg: pb.ModelInferRequest, target: Target) -> str:
    """Typed contents instead of (or beside) the raw bytes, right or wrong."""
    i = _index(draw, msg)
    if i is None:
        return "typed_contents"
    t = msg.inputs[i]
    raw = msg.raw_input_contents[i] if i < len(msg.raw_input_contents) else b""
    if t.datatype == "FP32" and draw(st.booleans()):
        t.contents.fp32_contents.extend(np.frombuffer(raw[: len(raw) // 4 * 4], "<f4").tolist())
    else:
        member = draw(st.sampled_from(list(arrays.CONTENTS_FIELDS.values())))
        count = draw(st.integers(0, 64))
        values = draw(st.sampled_from([0, 1, -1, 255, 2**31 - 1, 2**32 - 1]))
        if member == "bool_contents":
            values = 1
        elif member.startswith("uint"):
            values = abs(values)
        elif member == "int_contents":
            values = max(min(values, 2**31 - 1), -(2**31))
        getattr(t.contents, member).extend([values] * count)
    if draw(st.booleans()):  # the protocol's other form only: every raw entry goes
        del msg.raw_input_contents[:]
    return "typed_contents"


def m_codec_param(draw: st.DrawFn, msg: pb.ModelInferRequest, target: Target) -> str:
    if (i := _index(draw, msg)) is not None:
        params = msg.inputs[i].parameters
        if draw(st.booleans()) and crossing.CODEC_PARAM in params:
            del params[crossing.CODEC_PARAM]
        else:
            value = draw(st.one_of(st.sampled_from(CODECS.names()), param_values))
            _set_param(params, crossing.CODEC_PARAM, value)
    return "codec_param"


def m_shape_param(draw: st.DrawFn, msg: pb.ModelInferRequest, target: Target) -> str:
    if (i := _index(draw, msg)) is not None:
        params = msg.inputs[i].parameters
        spec = next((s for s in target.crossing if s.name == msg.inputs[i].name), None)
        honest = ",".join(str(d) for d in (spec.shape[1:] if spec else ()))
        value = draw(st.one_of(shape_params, dims.map(lambda b: f"{b},{honest}")))
        _set_param(params, crossing.SHAPE_PARAM, value)
    return "shape_param"


def m_wire_dtype_param(draw: st.DrawFn, msg: pb.ModelInferRequest, target: Target) -> str:
    if (i := _index(draw, msg)) is not None:
        _set_param(msg.inputs[i].parameters, crossing.WIRE_DTYPE_PARAM, draw(wire_dtypes))
    return "wire_dtype_param"


def m_params_param(draw: st.DrawFn, msg: pb.ModelInferRequest, target: Target) -> str:
    if (i := _index(draw, msg)) is not None:
        listed = st.lists(
            st.sampled_from(["scale", "zero_point", "x", "", "scale"]), max_size=12
        ).map(",".join)
        value = draw(st.one_of(listed, param_values))
        _set_param(msg.inputs[i].parameters, crossing.PARAMS_PARAM, value)
    return "params_param"


def m_drop_input(draw: st.DrawFn, msg: pb.ModelInferRequest, target: Target) -> str:
    """An input gone (a companion, or a crossing tensor), with its raw entry."""
    if (i := _index(draw, msg)) is not None:
        del msg.inputs[i]
        if i < len(msg.raw_input_contents):
            del msg.raw_input_contents[i]
    return "drop_input"


def m_duplicate_input(draw: st.DrawFn, msg: pb.ModelInferRequest, target: Target) -> str:
    if (i := _index(draw, msg)) is not None:
        msg.inputs.add().CopyFrom(msg.inputs[i])
        if i < len(msg.raw_input_contents):
            msg.raw_input_contents.append(msg.raw_input_contents[i])
    return "duplicate_input"


def m_rename_input(draw: st.DrawFn, msg: pb.ModelInferRequest, target: Target) -> str:
    if (i := _index(draw, msg)) is not None:
        msg.inputs[i].name = draw(names(target))
    return "rename_input"


def m_invent_input(draw: st.DrawFn, msg: pb.ModelInferRequest, target: Target) -> str:
    t = msg.inputs.add(name=draw(names(target)), datatype=draw(datatypes))
    t.shape.extend(draw(st.lists(dims, max_size=4)))
    if len(msg.raw_input_contents) or draw(st.booleans()):
        msg.raw_input_contents.append(draw(st.binary(max_size=64)))
    return "invent_input"


def m_reorder(draw: st.DrawFn, msg: pb.ModelInferRequest, target: Target) -> str:
    """Two inputs swap places, their raw entries do not."""
    if len(msg.inputs) >= 2:
        i, j = draw(st.lists(st.integers(0, len(msg.inputs) - 1), min_size=2, max_size=2))
        a, b = pb.ModelInferRequest.InferInputTensor(), pb.ModelInferRequest.InferInputTensor()
        a.CopyFrom(msg.inputs[i])
        b.CopyFrom(msg.inputs[j])
        msg.inputs[i].CopyFrom(b)
        msg.inputs[j].CopyFrom(a)
    return "reorder"


def m_model(draw: st.DrawFn, msg: pb.ModelInferRequest, target: Target) -> str:
    """Another served cut (the inputs of this one), or a model or version that does not exist."""
    other = draw(st.sampled_from(["", "0", "1", "2", "3", "-1", "01", " 1"]))
    msg.model_version = draw(st.one_of(st.just(other), huge_text))
    if draw(st.booleans()):
        msg.model_name = draw(
            st.one_of(st.sampled_from(list(CUTS)), st.text(max_size=12), huge_text)
        )
    return "model"


def m_empty_param(draw: st.DrawFn, msg: pb.ModelInferRequest, target: Target) -> str:
    """A parameter with no value set, on the request, an input or a requested output."""
    key = draw(st.one_of(st.sampled_from([crossing.CODEC_PARAM, crossing.SHAPE_PARAM]), st.text()))
    i = _index(draw, msg)
    where = msg.parameters if i is None or draw(st.booleans()) else msg.inputs[i].parameters
    where[key].Clear()
    return "empty_param"


def m_request_param(draw: st.DrawFn, msg: pb.ModelInferRequest, target: Target) -> str:
    _set_param(msg.parameters, draw(st.one_of(st.text(max_size=12), huge_text)), draw(param_values))
    return "request_param"


def m_shared_memory(draw: st.DrawFn, msg: pb.ModelInferRequest, target: Target) -> str:
    if (i := _index(draw, msg)) is not None:
        _set_param(msg.inputs[i].parameters, "shared_memory_region", draw(param_values))
    return "shared_memory"


def m_outputs(draw: st.DrawFn, msg: pb.ModelInferRequest, target: Target) -> str:
    known = [s.name for s in target.outputs]
    for name in draw(st.lists(st.one_of(st.sampled_from(known), names(target)), max_size=3)):
        msg.outputs.add(name=name)
    return "outputs"


def m_payload_bytes(draw: st.DrawFn, msg: pb.ModelInferRequest, target: Target) -> str:
    """Bytes of a payload or companion changed: compressed streams, zero points, NaN scales."""
    raws = msg.raw_input_contents
    if len(raws) and len(raws[i := draw(st.integers(0, len(raws) - 1))]):
        raw = bytearray(raws[i])
        for _ in range(draw(st.integers(1, 8))):
            pos = draw(
                st.one_of(st.integers(0, min(len(raw) - 1, 16)), st.integers(0, len(raw) - 1))
            )
            raw[pos] = draw(st.integers(0, 255))
        raws[i] = bytes(raw)
    return "payload_bytes"


def m_stage_header(draw: st.DrawFn, msg: pb.ModelInferRequest, target: Target) -> str:
    """A lossless stage's header (flags, body length) rewritten to a lie."""
    raws = msg.raw_input_contents
    if len(raws) and len(raws[i := draw(st.integers(0, len(raws) - 1))]) >= 5:
        size = draw(st.one_of(st.sampled_from([0, 1, 2**31, 2**32 - 1]), st.integers(0, 2**32 - 1)))
        raws[i] = struct.pack("<BI", draw(st.integers(0, 255)), size) + raws[i][5:]
    return "stage_header"


def m_bomb(draw: st.DrawFn, msg: pb.ModelInferRequest, target: Target) -> str:
    """A payload replaced by a stream that decompresses to tens of MiB, as a UINT8 stream."""
    i = _index(draw, msg)
    if i is None:
        return "bomb"
    name = draw(st.sampled_from(sorted(_bombs())))
    size = draw(st.sampled_from([64 * 1024 * 1024, 16 * 1024 * 1024, 2**32 - 1, 1024, 0]))
    raw = struct.pack("<BI", draw(st.sampled_from([0, 1])), size) + _bombs()[name]
    t = msg.inputs[i]
    t.datatype = "UINT8"
    del t.shape[:]
    t.shape.append(len(raw))
    codec = ("int8+" if draw(st.booleans()) else "") + name.split("-")[0]
    _set_param(t.parameters, crossing.CODEC_PARAM, codec)
    if i < len(msg.raw_input_contents):
        msg.raw_input_contents[i] = raw
    return f"bomb:{name}"


def m_id(draw: st.DrawFn, msg: pb.ModelInferRequest, target: Target) -> str:
    msg.id = draw(st.one_of(st.text(max_size=16), huge_text))
    return "id"


MUTATIONS: list[Mutation] = [
    m_datatype, m_shape, m_dim, m_raw_size, m_raw_count, m_typed_contents, m_codec_param,
    m_shape_param, m_wire_dtype_param, m_params_param, m_drop_input, m_duplicate_input,
    m_rename_input, m_invent_input, m_reorder, m_model, m_empty_param, m_request_param,
    m_shared_memory, m_outputs, m_payload_bytes, m_stage_header, m_bomb, m_id,
]  # fmt: skip


@st.composite
def byte_mutations(draw: st.DrawFn, data: bytes) -> bytes:
    """Bytes of a serialized message flipped, cut, inserted or repeated; often in its header
    (metadata precedes the raw contents in the encoding), else anywhere."""
    out = bytearray(data)
    for _ in range(draw(st.integers(1, 3))):
        last = max(len(out) - 1, 0)
        pos = draw(st.one_of(st.integers(0, min(last, 256)), st.integers(0, last)))
        op = draw(st.sampled_from(["flip", "truncate", "insert", "repeat", "varint"]))
        if op == "flip" and out:
            out[pos] ^= draw(st.integers(1, 255))
        elif op == "truncate":
            del out[pos:]
        elif op == "insert":
            out[pos:pos] = draw(st.binary(min_size=1, max_size=16))
        elif op == "repeat":
            out[pos:pos] = out[pos : pos + draw(st.integers(1, 64))]
        elif op == "varint":  # a length or tag as large as varints go, or longer
            out[pos:pos] = draw(st.sampled_from([_varint(2**63), _varint(2**64 - 1), b"\xff" * 11]))
    return bytes(out)


@st.composite
def wire_noise(draw: st.DrawFn) -> bytes:
    """Protobuf-shaped noise: fields of any number and wire type, lengths that lie."""
    out = bytearray()
    for _ in range(draw(st.integers(0, 8))):
        number = draw(st.one_of(st.integers(1, 12), st.integers(0, 2**29 - 1)))
        wire_type = draw(st.integers(0, 7))
        out += _varint(number << 3 | wire_type)
        if wire_type == 0:
            out += _varint(draw(st.integers(0, 2**64 - 1)))
        elif wire_type == 2:
            out += _varint(draw(st.one_of(st.integers(0, 64), st.sampled_from([2**31, 2**62]))))
            out += draw(st.binary(max_size=64))
        else:
            out += draw(st.binary(max_size=8))
    return bytes(out)


@st.composite
def valid_requests(
    draw: st.DrawFn, targets: Sequence[Target]
) -> tuple[pb.ModelInferRequest, Target, str, list[np.ndarray]]:
    """A request an edge would send (any registered codec), its cut, codec and tensors."""
    target = draw(st.sampled_from(targets))
    codec = draw(st.sampled_from(CODECS.names()))
    batch = draw(st.integers(1, 3))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    relu = draw(st.booleans())  # post-ReLU features: half zeros, the stages' sparse packing
    tensors = []
    for spec in target.crossing:
        a = rng.standard_normal((batch, *spec.shape[1:]), dtype=np.float32)
        tensors.append((np.maximum(a, 0) if relu else a).astype(spec.dtype))
    inputs, params = crossing.encode_inputs(tensors, target.crossing, codec)
    request = serde.InferRequest(
        target.model,
        inputs,
        model_version=target.version,
        id=f"fuzz-{draw(st.integers(0, 2**16))}",
        input_parameters=params,
    )
    return serde.request_to_proto(request), target, codec, tensors


def decoded_by_codec(tensors: Sequence[np.ndarray], codec: str) -> list[np.ndarray]:
    """What a node must decode ``tensors`` sent with ``codec`` to: them, or the codec's copy."""
    if codec == "none":
        return list(tensors)
    coder = CODECS.get(codec)
    return [coder.decode(coder.encode(a)) for a in tensors]


@st.composite
def hostile_requests(draw: st.DrawFn, targets: Sequence[Target]) -> Case:
    """Valid requests, mutated ones (structurally, then maybe byte by byte), bytes and noise.

    Messages are serialized with their parameter maps in key order: protobuf's own map order
    varies from process to process, and the byte mutations would then hit other fields.
    """
    kind = draw(st.sampled_from(["valid", "bytes", "noise", *["mutated"] * 4]))
    msg, target, codec, tensors = draw(valid_requests(targets))
    steps = [kind, f"codec:{codec}"]
    if kind == "valid":
        return Case(
            msg.SerializeToString(deterministic=True),
            target,
            steps,
            decoded_by_codec(tensors, codec),
        )
    if kind == "noise":
        data = draw(st.one_of(st.binary(max_size=4096), wire_noise()))
        return Case(data, target, steps)
    if kind == "mutated":
        for _ in range(draw(st.integers(1, 4))):
            steps.append(draw(st.sampled_from(MUTATIONS))(draw, msg, target))
    data = msg.SerializeToString(deterministic=True)
    if kind == "bytes" or draw(st.integers(0, 7)) == 0:
        data = draw(byte_mutations(data))
        steps.append("bytes")
    return Case(data, target, steps)


# ------------------------------------------------------------------------------ property


def problems(harness: Harness, case: Case, outcome: Outcome) -> list[str]:
    """How ``outcome`` breaks the property (see the module docstring); empty when it holds."""
    found = []
    bound = MEMORY_SLACK_BYTES + 3 * len(case.data) + 3 * harness.max_request_bytes
    if outcome.peak_bytes > bound:
        found.append(f"allocated {outcome.peak_bytes} bytes, above the bound of {bound}")
    if outcome.kind == "crashed":
        found.append(f"{outcome.error} escaped: {outcome.message[:300]}\n{outcome.traceback}")
    elif outcome.kind == "refused":
        if outcome.code not in REFUSAL_CODES:
            found.append(f"refused with {outcome.code}: {outcome.message[:300]}")
        if outcome.error_type is not None and not issubclass(outcome.error_type, PROJECT_ERRORS):
            found.append(f"refused on a {outcome.error}, not a project error: {outcome.message}")
        if not outcome.message or "\n" in outcome.message or "\r" in outcome.message:
            found.append(f"message not one line: {outcome.message[:300]!r}")
        if len(outcome.message.encode()) > 4096:
            found.append(f"message of {len(outcome.message.encode())} bytes")
        if wrapped_error(outcome.message) in ("MemoryError", "OverflowError"):
            found.append(f"a codec tried to allocate: {outcome.message[:300]}")
        if case.expected is not None:
            found.append(f"a valid request was refused: {outcome.code}: {outcome.message[:300]}")
    else:
        found += _answer_problems(harness, case, outcome)
    return found


def _answer_problems(harness: Harness, case: Case, outcome: Outcome) -> list[str]:
    assert outcome.reply is not None
    msg, _ = splice.split_request(case.data)
    target = harness.target(msg.model_name, msg.model_version)
    decoded = outcome.decoded
    if target is None or decoded is None:
        return [f"answered {msg.model_name[:64]!r} version {msg.model_version[:64]!r} unseen"]
    found = []
    batches = {int(a.shape[0]) if a.ndim else -1 for a in decoded}
    batch = batches.pop() if len(batches) == 1 else -1
    if len(decoded) != len(target.crossing) or batch < 1 or batch > target.max_batch:
        found.append(f"decoded {[(a.dtype, a.shape) for a in decoded]}: not one batch per spec")
    for a, spec in zip(decoded, target.crossing, strict=False):
        if a.dtype != np.dtype(spec.dtype) or a.shape != (batch, *spec.shape[1:]):
            found.append(f"decoded {a.dtype} {a.shape} for {spec.name!r} {spec.shape} {spec.dtype}")
    if batch * sum(s.bytes for s in target.crossing) > harness.max_request_bytes:
        found.append(f"decoded batch {batch} is above the request limit")
    reply = splice.response_from_wire(outcome.reply)
    for spec in target.outputs:
        out = reply.outputs.get(spec.name)
        if out is None or out.shape != (batch, *spec.shape[1:]):
            found.append(f"output {spec.name!r}: {None if out is None else out.shape}")
    if case.expected is not None:
        for a, want in zip(decoded, case.expected, strict=True):
            if not np.array_equal(a, want, equal_nan=True):
                found.append(f"valid request decoded to other values (codec {case.steps[1]})")
    return found


def wrapped_error(message: str) -> str | None:
    """The class a codec raised, when a refusal wraps one (decode_inputs names it)."""
    match = _WRAPPED.search(message)
    return match.group(1) if match else None


# ------------------------------------------------------------------------------ tests


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    root = build_fuzz_repository(tmp_path_factory.mktemp("fuzz-repository"))
    h = Harness(root)
    yield h
    h.close()


def check(harness: Harness, case: Case) -> Outcome:
    outcome = harness.call(case.data)
    found = problems(harness, case, outcome)
    assert not found, f"{case.steps} ({len(case.data)} bytes): " + "; ".join(found)
    return outcome


@settings(
    max_examples=300,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=st.data())
def test_hostile_requests_decode_exactly_or_are_refused_in_one_line(
    harness: Harness, data: st.DataObject
) -> None:
    check(harness, data.draw(hostile_requests(harness.targets)))


@pytest.mark.parametrize("codec", CODECS.names())
def test_every_codec_valid_request_decodes_exactly(harness: Harness, codec: str) -> None:
    for target in harness.targets:
        tensors = [
            np.random.default_rng(3).standard_normal((2, *s.shape[1:]), dtype=np.float32)
            for s in target.crossing
        ]
        inputs, params = crossing.encode_inputs(tensors, target.crossing, codec)
        request = serde.InferRequest(
            target.model, inputs, model_version=target.version, input_parameters=params
        )
        expected = decoded_by_codec(tensors, codec)
        case = Case(splice.request_to_wire(request), target, ["valid", codec], expected)
        assert check(harness, case).kind == "answered"


@pytest.mark.parametrize("bomb", ["zstd-sized", "zstd-unsized", "zstd-window", "lz4"])
def test_decompression_bombs_are_refused_within_the_bound(harness: Harness, bomb: str) -> None:
    target = harness.targets[-1]  # resnet18: 16 KiB per tensor and frame
    tensors = [np.zeros((1, *s.shape[1:]), np.float32) for s in target.crossing]
    inputs, params = crossing.encode_inputs(tensors, target.crossing, "int8+zstd")
    msg = serde.request_to_proto(
        serde.InferRequest(
            target.model, inputs, model_version=target.version, input_parameters=params
        )
    )
    name = target.crossing[0].name
    i = [t.name for t in msg.inputs].index(name)
    stream = _bombs()[bomb]
    codec = "int8+lz4" if bomb == "lz4" else "int8+zstd"
    for size in (64 * 1024 * 1024, math.prod(target.crossing[0].shape) + 1):
        raw = struct.pack("<BI", 0, size) + stream
        msg.raw_input_contents[i] = raw
        del msg.inputs[i].shape[:]
        msg.inputs[i].shape.append(len(raw))
        _set_param(msg.inputs[i].parameters, crossing.CODEC_PARAM, codec)
        case = Case(
            msg.SerializeToString(deterministic=True),
            target,
            ["mutated", f"bomb:{bomb}", str(size)],
        )
        assert check(harness, case).kind == "refused"
