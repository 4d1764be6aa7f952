"""tritonclient's side of the compatibility tests, run as a separate process.

tritonclient.grpc registers its own copy of the OIP messages (package ``inference``) in
protobuf's default descriptor pool, as does ``protos.inference``; one process cannot import
both. So the tests run this script, which imports tritonclient and never ``protos``.

    python triton_peer.py offline DIR      # descriptor + tritonclient-encoded requests
    python triton_peer.py client CONFIG    # live calls described by a JSON file
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import tritonclient.grpc as tc
from tritonclient.grpc import _utils as tc_utils
from tritonclient.grpc import service_pb2
from tritonclient.utils import InferenceServerException

# Every numeric datatype with a shape that exercises 0-d, zero-size and odd sizes.
CASES = [
    ("BOOL", np.bool_, [2, 3]),
    ("UINT8", np.uint8, [5]),
    ("UINT16", np.uint16, [1, 3]),
    ("UINT32", np.uint32, []),
    ("UINT64", np.uint64, [2, 2]),
    ("INT8", np.int8, [0, 4]),
    ("INT16", np.int16, [3, 1, 2]),
    ("INT32", np.int32, [7]),
    ("INT64", np.int64, [2, 0]),
    ("FP16", np.float16, [4, 4]),
    ("FP32", np.float32, [1, 3, 4, 4]),
    ("FP64", np.float64, [3]),
]


def sample(dtype: type, shape: list[int], rng: np.random.Generator) -> np.ndarray:
    if dtype is np.bool_:
        return rng.integers(0, 2, size=shape).astype(np.bool_)
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return rng.integers(info.min, info.max, size=shape, dtype=dtype, endpoint=True)
    return rng.standard_normal(size=shape).astype(dtype)


def build_request(inputs: dict[str, np.ndarray], **kwargs: object) -> service_pb2.ModelInferRequest:
    """A ModelInferRequest exactly as tritonclient's InferenceServerClient.infer builds it."""
    infer_inputs = []
    for name, array in inputs.items():
        infer_input = tc.InferInput(
            name, list(array.shape), tc_utils.np_to_triton_dtype(array.dtype)
        )
        infer_input.set_data_from_numpy(array)
        infer_inputs.append(infer_input)
    outputs = [tc.InferRequestedOutput("y0"), tc.InferRequestedOutput("y1", class_count=3)]
    return tc_utils._get_inference_request(
        model_name="split-net",
        inputs=infer_inputs,
        model_version="2",
        request_id="req-7",
        outputs=outputs,
        sequence_id=0,
        sequence_start=False,
        sequence_end=False,
        priority=0,
        timeout=None,
        parameters=kwargs.get("parameters"),
    )


def offline(directory: Path) -> None:
    rng = np.random.default_rng(1234)
    (directory / "triton_descriptor.bin").write_bytes(service_pb2.DESCRIPTOR.serialized_pb)

    # Raw contents, every datatype, as InferInput.set_data_from_numpy encodes them.
    inputs = {f"in_{dt.lower()}": sample(t, shape, rng) for dt, t, shape in CASES}
    request = build_request(inputs, parameters={"codec": "int8", "frames": 3, "lossless": True})
    (directory / "raw_request.bin").write_bytes(request.SerializeToString())
    np.savez(directory / "raw_inputs.npz", **inputs)  # type: ignore[arg-type]

    # Typed contents, built with tritonclient's own generated classes.
    typed = service_pb2.ModelInferRequest(model_name="split-net")
    x = typed.inputs.add(name="x", datatype="FP32", shape=[2, 2])
    x.contents.fp32_contents.extend([1.5, -2.0, 0.25, 8.0])
    k = typed.inputs.add(name="k", datatype="INT8", shape=[3])
    k.contents.int_contents.extend([-128, 0, 127])
    b = typed.inputs.add(name="b", datatype="BOOL", shape=[2])
    b.contents.bool_contents.extend([True, False])
    (directory / "typed_request.bin").write_bytes(typed.SerializeToString())

    # A BYTES tensor, which edgecut rejects.
    strings = tc.InferInput("text", [2], "BYTES")
    strings.set_data_from_numpy(np.array([b"ab", b"cde"], dtype=np.object_))
    bytes_request = tc_utils._get_inference_request(
        "split-net", [strings], "", "", None, 0, False, False, 0, None, None
    )
    (directory / "bytes_request.bin").write_bytes(bytes_request.SerializeToString())

    # The other direction: a response encoded by edgecut, read by tritonclient's InferResult.
    response_path = directory / "edgecut_response.bin"
    if response_path.exists():
        response = service_pb2.ModelInferResponse.FromString(response_path.read_bytes())
        result = tc.InferResult(response)
        expected = np.load(directory / "edgecut_outputs.npz")
        checked = {}
        for name in expected.files:
            got = result.as_numpy(name)
            checked[name] = bool(
                got is not None
                and got.dtype == expected[name].dtype
                and got.shape == expected[name].shape
                and np.array_equal(got, expected[name])
            )
        (directory / "response_check.json").write_text(json.dumps(checked))


def _status(exc: InferenceServerException) -> str:
    return str(exc.status()).removeprefix("StatusCode.")


def client(config_path: Path) -> None:
    """Run the calls a JSON config asks for and write what happened next to it."""
    config = json.loads(config_path.read_text())
    results = []
    for scenario in config["scenarios"]:
        tls = scenario.get("tls")
        kwargs: dict[str, object] = {}
        if tls:
            kwargs = {
                "ssl": True,
                "root_certificates": tls["root_ca"],
                "private_key": tls.get("key"),
                "certificate_chain": tls.get("cert"),
            }
        headers = (
            {"authorization": f"Bearer {scenario['token']}"} if scenario.get("token") else None
        )
        outcome: dict[str, object] = {"name": scenario["name"]}
        with tc.InferenceServerClient(scenario["url"], **kwargs) as triton:
            try:
                outcome["live"] = triton.is_server_live(headers=headers, client_timeout=20)
                outcome["ready"] = triton.is_server_ready(headers=headers, client_timeout=20)
            except InferenceServerException as exc:
                outcome["error"] = _status(exc)
                results.append(outcome)
                continue
            if scenario.get("infer"):
                rng = np.random.default_rng(7)
                big_floats = scenario["infer"]["big_floats"]  # > 4 MiB when large
                inputs = {
                    "x": rng.standard_normal((2, 3)).astype(np.float32),
                    "ids": np.arange(5, dtype=np.int64),
                    "big": rng.standard_normal(big_floats).astype(np.float32),
                }
                infer_inputs = []
                for name, array in inputs.items():
                    infer_input = tc.InferInput(
                        name, list(array.shape), tc_utils.np_to_triton_dtype(array.dtype)
                    )
                    infer_input.set_data_from_numpy(array)
                    infer_inputs.append(infer_input)
                result = triton.infer(
                    "echo", infer_inputs, headers=headers, client_timeout=60, request_id="r1"
                )
                outcome["infer"] = {
                    "id": result.get_response().id,
                    "echoed": {
                        name: bool(np.array_equal(result.as_numpy(f"{name}_echo"), array))
                        and result.as_numpy(f"{name}_echo").dtype == array.dtype
                        for name, array in inputs.items()
                    },
                }
                np.savez(config_path.with_suffix(f".{scenario['name']}.npz"), **inputs)  # type: ignore[arg-type]
        results.append(outcome)
    config_path.with_suffix(".out.json").write_text(json.dumps(results))


if __name__ == "__main__":
    mode, arg = sys.argv[1], Path(sys.argv[2])
    {"offline": offline, "client": client}[mode](arg)
