"""edgecut's own control service (``edgecut.v1.EdgecutService``) beside the inference service.

ListCuts tells an edge which cuts (versions) the cloud serves, what crosses each one and the
breakpoint table; GetManifest returns one cut's manifest verbatim; DeploySplit uploads a split
artifact, verifies every file's size and sha256 in a staging directory, loads the tail, and
only then moves it into the repository, so a broken upload never becomes visible.

DeploySplit is off unless the server holds an admin token (``--admin-token-file``), and then
only a call bearing that token may upload: inference tokens may not. With a trusted key
(``--trust-key``) an upload must be signed by it, as every version on disk must.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import logging
import math
import re
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

import grpc
import numpy as np

from cloud_node.logs import log_event
from cloud_node.models import (
    FAILED,
    LOADING,
    READY,
    UNAVAILABLE,
    ModelStore,
    NotFound,
    Tail,
    read_tail,
)
from partitioner.deploy import crossing
from partitioner.deploy.artifact import MANIFEST, parse_manifest
from partitioner.deploy.files import write_json_atomic
from partitioner.deploy.repository import (
    FORMAT,
    FORMAT_VERSION,
    MODEL_FILE,
    Band,
    RepositoryError,
    check_model_name,
    check_version,
    read_model,
)
from partitioner.errors import EdgecutError
from partitioner.model.graph import TensorSpec
from protos.edgecut.v1 import edgecut_pb2 as cpb
from protos.edgecut.v1 import edgecut_pb2_grpc as cpb_grpc

STAGING_DIR = ".staging"
DEPLOY_METHOD = "/edgecut.v1.EdgecutService/DeploySplit"
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_AUTHORIZATION = "authorization"
_STATES = {
    READY: cpb.CUT_STATE_READY,
    LOADING: cpb.CUT_STATE_LOADING,
    UNAVAILABLE: cpb.CUT_STATE_UNAVAILABLE,
    FAILED: cpb.CUT_STATE_FAILED,
}


class _Abort(Exception):
    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code


def _tensor_spec(spec: Any, codec: str) -> cpb.TensorSpec:
    wire = spec.bytes
    if codec != "none":
        from partitioner.codecs import CODECS

        try:
            wire = CODECS.get(codec).wire_bytes(spec.bytes, spec.shape)
        except EdgecutError:
            wire = 0
    return cpb.TensorSpec(
        name=spec.name,
        datatype=crossing.oip_datatype(spec.dtype),
        shape=crossing.oip_shape(spec),
        size_bytes=spec.bytes,
        wire_bytes=wire,
    )


def _codec_message(name: str) -> cpb.Codec:
    from partitioner.codecs import CODECS

    try:
        wire = CODECS.get(name).encode(np.zeros((1, 1, 1, 1), dtype=np.float32)).wire_dtype
        wire_datatype = crossing.oip_datatype(wire)
    except EdgecutError:
        wire_datatype = ""
    lossless = name.split("+", 1)[1] if "+" in name else ""
    return cpb.Codec(name=name, wire_datatype=wire_datatype, lossless=lossless)


def _plan_message(plan: dict[str, Any]) -> cpb.Plan:
    predicted = plan.get("predicted", {})
    return cpb.Plan(
        solver=str(plan.get("solver", "")),
        objective=str(plan.get("objective", "")),
        objective_value=float(plan.get("objective_value", 0.0)),
        edge_device=str(plan.get("edge_device", "")),
        cloud_device=str(plan.get("cloud_device", "")),
        bandwidth_mbps=float(plan.get("bandwidth_mbps", 0.0)),
        rtt_ms=float(plan.get("rtt_ms", 0.0)),
        edge_nodes=[str(n) for n in plan.get("edge_nodes", ())],
        predicted=cpb.Prediction(
            edge_ms=float(predicted.get("edge_ms", 0.0)),
            transfer_ms=float(predicted.get("transfer_ms", 0.0)),
            cloud_ms=float(predicted.get("cloud_ms", 0.0)),
            total_ms=float(predicted.get("total_ms", 0.0)),
            edge_energy_mj=float(predicted.get("edge_energy_mj", 0.0)),
        ),
        edge_only_ms=float(plan.get("edge_only_ms", 0.0)),
        cloud_only_ms=float(plan.get("cloud_only_ms", 0.0)),
    )


def cut_message(tail: Tail) -> cpb.Cut:
    codec = str(tail.manifest.get("codec", "none"))
    cut = cpb.Cut(
        version=tail.version,
        state=_STATES.get(tail.state, cpb.CUT_STATE_UNSPECIFIED),
        reason=tail.reason,
        crossing=[_tensor_spec(s, codec) for s in tail.crossing],
        outputs=[_tensor_spec(s, "none") for s in tail.outputs],
        codec=_codec_message(codec),
        plan=_plan_message(tail.manifest.get("plan", {})),
        manifest_sha256=tail.manifest_sha256,
        head_sha256=tail.head_sha256,
    )
    cut.deployed_at.FromNanoseconds(int(tail.deployed_at * 1e9))
    return cut


def _breakpoint_message(band: Band, first: bool, last: bool) -> cpb.Breakpoint:
    return cpb.Breakpoint(
        min_mbps=0.0 if first else band.min_mbps,
        max_mbps=math.inf if last else band.max_mbps,
        version=band.version or "",
        edge_nodes=list(band.edge_nodes),
        total_ms_at_min=band.total_ms_at_min,
        total_ms_at_max=band.total_ms_at_max,
    )


class ControlService(cpb_grpc.EdgecutServiceServicer):
    """ListCuts, GetManifest and DeploySplit over a :class:`ModelStore`."""

    def __init__(
        self,
        store: ModelStore,
        logger: logging.Logger,
        *,
        admin_tokens: tuple[str, ...] = (),
        max_deploy_bytes: int,
        on_deployed: Callable[[Tail], None],
        in_flight: Any = None,
    ) -> None:
        self._in_flight = in_flight or contextlib.nullcontext()
        self._store = store
        self._log = logger
        self._admin_tokens = tuple(t.encode() for t in admin_tokens)
        self._max_deploy_bytes = max_deploy_bytes
        self._on_deployed = on_deployed
        self._deploy_lock = threading.Lock()

    # ------------------------------------------------------------------- ListCuts

    def ListCuts(self, request: cpb.ListCutsRequest, context: Any) -> cpb.ListCutsResponse:
        models = self._store.models()
        if request.model_name and request.model_name not in models:
            context.abort(
                grpc.StatusCode.NOT_FOUND,
                f"unknown model {request.model_name!r}: this server holds "
                f"{', '.join(sorted(models)) or 'none'}",
            )
        response = cpb.ListCutsResponse()
        tails = self._store.tails()
        for name in sorted(models):
            if request.model_name and name != request.model_name:
                continue
            entry = models[name]
            mine = sorted((t for t in tails if t.model == name), key=lambda t: int(t.version))
            model = response.models.add(name=name)
            described = next((t for t in mine if t.manifest), None)
            if described is not None:
                for doc in described.manifest["inputs"]:
                    spec = TensorSpec.from_json(doc)
                    model.inputs.add(
                        name=spec.name,
                        datatype=crossing.oip_datatype(spec.dtype),
                        shape=crossing.oip_shape(spec),
                        size_bytes=spec.bytes,
                        wire_bytes=spec.bytes,
                    )
            if mine:
                model.default_version = self._store.default_version(name)
            for tail in mine:
                if request.ready_only and tail.state != READY:
                    continue
                model.cuts.append(cut_message(tail))
            if request.include_breakpoints:
                bands = entry.bands
                for i, band in enumerate(bands):
                    model.breakpoints.append(_breakpoint_message(band, i == 0, i == len(bands) - 1))
        return response

    # ---------------------------------------------------------------- GetManifest

    def GetManifest(self, request: cpb.GetManifestRequest, context: Any) -> cpb.GetManifestResponse:
        try:
            tail = self._store.find(request.model_name, request.version)
        except NotFound as exc:
            context.abort(grpc.StatusCode.NOT_FOUND, str(exc))
        if not tail.manifest_text:
            context.abort(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"model {tail.model!r} version {tail.version} is {tail.state}: {tail.reason}",
            )
        text = tail.manifest_text
        return cpb.GetManifestResponse(
            model_name=tail.model,
            version=tail.version,
            manifest_json=text,
            manifest_sha256=hashlib.sha256(text.encode()).hexdigest(),
        )

    # ---------------------------------------------------------------- DeploySplit

    def DeploySplit(
        self, request_iterator: Iterator[cpb.DeploySplitRequest], context: Any
    ) -> cpb.DeploySplitResponse:
        refusal = self._refuse_deploy(context.invocation_metadata())
        if refusal is not None:
            log_event(self._log, "deploy_refused", logging.WARNING, code=refusal[0].name)
            context.abort(*refusal)
        try:
            with self._in_flight:
                return self._deploy(request_iterator)
        except _Abort as exc:
            log_event(
                self._log, "deploy_failed", logging.WARNING, code=exc.code.name, message=str(exc)
            )
            context.abort(exc.code, str(exc))
            raise  # abort raises; this line only tells type checkers

    def _refuse_deploy(self, metadata: Any) -> tuple[grpc.StatusCode, str] | None:
        """Why a DeploySplit call may not upload (status and message), or None if it may."""
        if not self._admin_tokens:
            return (
                grpc.StatusCode.PERMISSION_DENIED,
                "DeploySplit is off on this server: start it with --admin-token-file FILE to "
                "accept uploads from callers bearing that admin token",
            )
        values = [v for k, v in metadata or () if k == _AUTHORIZATION]
        if not values:
            return (
                grpc.StatusCode.UNAUTHENTICATED,
                "DeploySplit needs the admin token: send metadata 'authorization: Bearer <token>'",
            )
        value = values[0] if isinstance(values[0], str) else values[0].decode(errors="replace")
        scheme, _, credential = value.strip().partition(" ")
        given = credential.strip().encode()
        # Compare with every admin token, without early exit, so timing tells nothing.
        matches = [hmac.compare_digest(given, token) for token in self._admin_tokens]
        if scheme.lower() != "bearer" or not any(matches):
            return (
                grpc.StatusCode.PERMISSION_DENIED,
                "DeploySplit needs the admin token (--admin-token-file); this credential may "
                "not deploy, and inference tokens never can",
            )
        return None

    def _deploy(self, requests: Iterator[cpb.DeploySplitRequest]) -> cpb.DeploySplitResponse:
        first = next(requests, None)
        if first is None or first.WhichOneof("part") != "header":
            raise _Abort(grpc.StatusCode.INVALID_ARGUMENT, "expected a DeployHeader first")
        header = first.header
        try:
            model = check_model_name(header.model_name)
            if header.version:
                check_version(header.version)
        except EdgecutError as exc:
            raise _Abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc)) from None
        sizes = self._check_files(header)
        try:
            manifest = parse_manifest(header.manifest_json.encode("utf-8"), "manifest_json")
        except EdgecutError as exc:
            raise _Abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc)) from None
        listed = manifest["files"]
        if set(listed) != set(sizes):
            raise _Abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"manifest_json lists files {sorted(listed)}, the header lists "
                f"{sorted(sizes)}; they must be the same",
            )
        for f in header.files:
            if listed[f.path]["sha256"] != f.sha256 or listed[f.path]["bytes"] != f.size_bytes:
                raise _Abort(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"{f.path}: header size or sha256 differs from the one in manifest_json",
                )
        if self._store.trust is not None:  # refuse before a byte of the files is received
            try:
                self._store.trust.verify(manifest, f"upload of model {model!r}")
            except EdgecutError as exc:
                raise _Abort(grpc.StatusCode.PERMISSION_DENIED, str(exc)) from None

        root = self._store.root
        with self._deploy_lock:
            existing = self._store.versions(model) if model in self._store.models() else []
            version = header.version or str(max((int(v) for v in existing), default=0) + 1)
            if version in existing and not header.replace:
                raise _Abort(
                    grpc.StatusCode.ALREADY_EXISTS,
                    f"model {model!r} already has version {version}; set replace to overwrite",
                )
            staging = root / STAGING_DIR / uuid.uuid4().hex
            staging.mkdir(parents=True)
            try:
                meta = self._model_file(model)
                received = self._receive(requests, header, staging)
                (staging / MANIFEST).write_text(header.manifest_json)
                tail = self._load_staged(model, version, staging)
                target = self._install(model, version, staging, manifest, meta, header.set_default)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
            tail.path = target
            self._store.replace_entry(read_model(root / model))
            self._store.set_tail(tail)
        self._on_deployed(tail)
        log_event(
            self._log, "deployed", model=model, version=version, bytes=received, path=str(target)
        )
        return cpb.DeploySplitResponse(
            model_name=model, version=version, received_bytes=received, cut=cut_message(tail)
        )

    def _check_files(self, header: cpb.DeployHeader) -> dict[str, int]:
        sizes: dict[str, int] = {}
        for f in header.files:
            if not f.path or Path(f.path).name != f.path or f.path in (".", "..", "manifest.json"):
                raise _Abort(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"file path {f.path!r} is not allowed: expected a plain file name such as "
                    "tail.pt2 (manifest.json travels in the header)",
                )
            if f.path in sizes:
                raise _Abort(grpc.StatusCode.INVALID_ARGUMENT, f"file {f.path!r} listed twice")
            if f.size_bytes < 0 or not _SHA256.match(f.sha256):
                raise _Abort(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"file {f.path!r}: expected size_bytes >= 0 and a lowercase hex sha256, got "
                    f"{f.size_bytes} and {f.sha256!r}",
                )
            sizes[f.path] = f.size_bytes
        total = sum(sizes.values())
        if total > self._max_deploy_bytes:
            raise _Abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"the artifact is {total} bytes, above this server's limit of "
                f"{self._max_deploy_bytes} bytes",
            )
        return sizes

    def _receive(
        self, requests: Iterator[cpb.DeploySplitRequest], header: cpb.DeployHeader, staging: Path
    ) -> int:
        expected = {f.path: f for f in header.files}
        written = dict.fromkeys(expected, 0)
        digests = {path: hashlib.sha256() for path in expected}
        handles: dict[str, BinaryIO] = {}
        try:
            for message in requests:
                if message.WhichOneof("part") != "chunk":
                    raise _Abort(
                        grpc.StatusCode.INVALID_ARGUMENT, "a second DeployHeader in one upload"
                    )
                chunk = message.chunk
                if chunk.path not in expected:
                    raise _Abort(
                        grpc.StatusCode.INVALID_ARGUMENT,
                        f"chunk for {chunk.path!r}, which is not in the header's files",
                    )
                if chunk.offset != written[chunk.path]:
                    raise _Abort(
                        grpc.StatusCode.INVALID_ARGUMENT,
                        f"chunk of {chunk.path!r} at offset {chunk.offset}, expected "
                        f"{written[chunk.path]}: chunks must come in order without overlap",
                    )
                if written[chunk.path] + len(chunk.data) > expected[chunk.path].size_bytes:
                    raise _Abort(
                        grpc.StatusCode.DATA_LOSS,
                        f"{chunk.path!r} is larger than the {expected[chunk.path].size_bytes} "
                        "bytes the header announced",
                    )
                if chunk.path not in handles:
                    handles[chunk.path] = (staging / chunk.path).open("wb")
                handles[chunk.path].write(chunk.data)
                digests[chunk.path].update(chunk.data)
                written[chunk.path] += len(chunk.data)
        finally:
            for handle in handles.values():
                handle.close()
        for path, entry in expected.items():
            if written[path] != entry.size_bytes:
                raise _Abort(
                    grpc.StatusCode.DATA_LOSS,
                    f"the stream ended with {written[path]} of {entry.size_bytes} bytes of "
                    f"{path!r}",
                )
            if not (staging / path).exists():
                (staging / path).write_bytes(b"")
            if digests[path].hexdigest() != entry.sha256:
                raise _Abort(
                    grpc.StatusCode.DATA_LOSS,
                    f"{path!r}: sha256 of the received bytes is {digests[path].hexdigest()[:16]}…, "
                    f"the header says {entry.sha256[:16]}…",
                )
        return sum(written.values())

    def _model_file(self, model: str) -> dict[str, Any] | None:
        """The model's model.json as validated, None if it has none; a broken one refuses."""
        path = self._store.root / model
        if not (path / MODEL_FILE).exists():
            return None
        try:
            return read_model(path).meta
        except RepositoryError as exc:
            raise _Abort(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"model {model!r} cannot take a version until its model.json is fixed: {exc}",
            ) from None

    def _load_staged(self, model: str, version: str, staging: Path) -> Tail:
        tail = read_tail(model, version, staging, self._store.trust)
        if tail.state == FAILED:
            raise _Abort(grpc.StatusCode.INVALID_ARGUMENT, f"manifest_json: {tail.reason}")
        tail.load()
        if tail.state != READY:  # the archive itself is refused (or torch cannot load it)
            raise _Abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"the files match their hashes but the tail is refused: {tail.reason}",
            )
        return tail

    def _install(
        self,
        model: str,
        version: str,
        staging: Path,
        manifest: dict[str, Any],
        meta: dict[str, Any] | None,
        set_default: bool,
    ) -> Path:
        root = self._store.root / model
        root.mkdir(parents=True, exist_ok=True)
        target = root / version
        if target.exists():
            old = self._store.root / STAGING_DIR / f"old-{uuid.uuid4().hex}"
            target.rename(old)
            shutil.rmtree(old, ignore_errors=True)
        staging.rename(target)
        meta_path = root / MODEL_FILE
        if meta is None:
            meta = {
                "format": FORMAT,
                "format_version": FORMAT_VERSION,
                "name": model,
                "model": manifest.get("model", model),
                "model_spec": manifest.get("model_spec", model),
                "input_shape": manifest.get("input_shape", []),
                "codec": manifest.get("codec", "none"),
                "default_version": None,
                "versions": {},
                "local": None,
                "breakpoints": [],
            }
        meta.setdefault("versions", {})[version] = {
            "crossing": [t["name"] for t in manifest["crossing"]],
            "cloud_only": bool(manifest.get("cloud_only")),
            "head_sha256": manifest["files"]["head.pt2"]["sha256"],
            "tail_sha256": manifest["files"].get("tail.pt2", {}).get("sha256", ""),
            "deployed_at": time.time(),
        }
        if set_default or not meta.get("default_version"):
            meta["default_version"] = version
        write_json_atomic(meta_path, meta)
        return target
