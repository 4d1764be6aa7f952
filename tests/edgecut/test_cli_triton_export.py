"""``edgecut repository export --format triton``: a Triton model repository for the tails.

Each config.pbtxt is parsed by Triton's own schema (tritonclient's ``model_config_pb2`` with
protobuf's text format, in a subprocess: tritonclient and ``protos.inference`` cannot share
a process) and compared with the manifest; each ``model.pt`` is loaded as TorchScript and
run on real digits (scikit-learn's) and on a resnet18 cut inside a residual block, where
two tensors cross in the order the config lists them.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from edgecut.cli import main
from partitioner.deploy.artifact import load_split, read_manifest
from partitioner.planner import Planner
from partitioner.publish import build_repository
from partitioner.triton_export import (
    TritonExportError,
    TritonOptions,
    export_triton,
    triton_config,
)

_PARSE = """
import json, sys
from google.protobuf import json_format, text_format
from tritonclient.grpc import model_config_pb2
out = []
for path in sys.argv[1:]:
    config = text_format.Parse(open(path).read(), model_config_pb2.ModelConfig())
    out.append(json_format.MessageToDict(config, preserving_proto_field_name=True))
print(json.dumps(out))
"""


def parse_configs(*paths: Path) -> list[dict[str, Any]]:
    """Each config.pbtxt as Triton's ModelConfig reads it (a dict of its set fields)."""
    if importlib.util.find_spec("tritonclient") is None:
        pytest.skip("tritonclient[grpc] is a test dependency: it carries Triton's config schema")
    proc = subprocess.run(
        [sys.executable, "-c", _PARSE, *map(str, paths)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout)


def run_cli(*argv: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        code = main(list(argv))
    except SystemExit as exc:  # argparse's refusals
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def digits_repo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Planner]:
    planner = Planner.create("digits_cnn")
    root = tmp_path_factory.mktemp("digits-repository")
    plans = [planner.cut_after("relu2"), planner.cut_after("pool2")]
    build_repository(planner, root, plans=plans, with_local=False)
    return root, planner


@pytest.fixture(scope="module")
def resnet_block_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    planner = Planner.create("resnet18", input_shape=(1, 3, 32, 32))
    root = tmp_path_factory.mktemp("resnet-block-repository")
    build_repository(planner, root, plans=[planner.cut_after("layer1.0.relu1")], with_local=False)
    return root


def test_every_tail_becomes_a_triton_model_that_matches_its_manifest(
    digits_repo: tuple[Path, Planner], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repo, _ = digits_repo
    out = tmp_path / "triton"
    code, stdout, err = run_cli(
        "repository", "export", str(repo), str(out), "--format", "triton",
        "--max-batch", "8", "--batch-timeout-ms", "2.5", "--instances", "2", "--json",
        capsys=capsys,
    )  # fmt: skip
    assert code == 0, err
    written = json.loads(stdout)["models"]
    # Two cuts of one model: one Triton model each, named by version, version kept.
    assert [(m["name"], m["version"]) for m in written] == [
        ("digits_cnn-v1", "1"),
        ("digits_cnn-v2", "2"),
    ]
    configs = parse_configs(*(out / m["name"] / "config.pbtxt" for m in written))
    for m, config in zip(written, configs, strict=True):
        manifest = read_manifest(repo / "digits_cnn" / m["version"])
        assert sorted(p.name for p in (out / m["name"]).iterdir()) == [m["version"], "config.pbtxt"]
        assert (out / m["name"] / m["version"] / "model.pt").is_file()
        assert config["name"] == m["name"] and config["backend"] == "pytorch"
        assert config["max_batch_size"] == 8
        assert config["dynamic_batching"] == {"max_queue_delay_microseconds": "2500"}
        assert config["instance_group"] == [{"count": 2, "kind": "KIND_CPU"}]
        for kind, key in (("input", "crossing"), ("output", "outputs")):
            assert [(t["name"], t["data_type"], [int(d) for d in t["dims"]]) for t in config[kind]] == [
                (t["name"], "TYPE_FP32", t["shape"][1:]) for t in manifest[key]
            ]  # fmt: skip
    assert [t["name"] for t in configs[0]["input"]] == ["relu2"]
    assert [t["name"] for t in configs[1]["input"]] == ["pool2"]


def test_torchscript_answers_real_digits_as_the_tail_and_the_whole_model_do(
    digits_repo: tuple[Path, Planner], tmp_path: Path
) -> None:
    from sklearn.datasets import load_digits

    repo, planner = digits_repo
    written = export_triton(repo, tmp_path / "triton", versions=["1"])
    (model,) = written
    assert (model.name, model.version, model.max_batch_size) == ("digits_cnn", "1", 16)
    images = load_digits().images[:24].astype(np.float32) / 16.0  # (24, 8, 8), 0..1
    x = torch.from_numpy(images[:, None])  # (24, 1, 8, 8)
    artifact = load_split(repo / "digits_cnn" / "1")
    scripted = torch.jit.load(str(model.path / "1" / "model.pt"))
    (crossing,) = artifact.run_head(x)
    with torch.inference_mode():
        got = scripted(crossing)
        whole = planner.loaded.module(x)
    (want,) = artifact.run_tail(crossing)
    assert isinstance(got, torch.Tensor) and got.shape == (24, 10)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(got, whole, rtol=1e-4, atol=1e-4)
    # A real answer, not a constant: the digits are told apart.
    assert len(set(got.argmax(1).tolist())) > 1


def test_two_crossing_tensors_keep_the_manifests_order(
    resnet_block_repo: Path, tmp_path: Path
) -> None:
    (model,) = export_triton(resnet_block_repo, tmp_path / "triton")
    (config,) = parse_configs(model.path / "config.pbtxt")
    names = [t["name"] for t in config["input"]]
    assert names == ["maxpool", "layer1.0.relu1"] == [t["name"] for t in model.inputs]
    artifact = load_split(resnet_block_repo / "resnet18" / "1")
    x = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    crossing = artifact.run_head(x)
    scripted = torch.jit.load(str(model.path / "1" / "model.pt"))
    with torch.inference_mode():
        got = scripted(*crossing)
    torch.testing.assert_close(got, artifact.run_tail(*crossing)[0], rtol=1e-5, atol=1e-5)
    with pytest.raises(RuntimeError):  # the order matters: swapped, the shapes do not fit
        scripted(*reversed(crossing))


def test_fixed_batch_tails_and_batch_only_tensors_and_odd_names_read_back(tmp_path: Path) -> None:
    def spec(name: str, shape: list[int], dtype: str = "float32") -> dict[str, Any]:
        return {"name": name, "shape": shape, "dtype": dtype, "bytes": 4}

    odd = 'feat "quoted" \\ é'  # a quote, a backslash and UTF-8 survive the text format
    manifest = {
        "model": "m",
        "files": {"tail.pt2": {"sha256": "0" * 64, "bytes": 1}},
        "crossing": [spec(odd, [1, 8]), spec("ids", [1, 4], "int64")],
        "outputs": [spec("score", [1]), spec("mask", [1, 2], "bool")],
    }
    options = TritonOptions(max_batch=4, batch_delay_us=0, instances=3)
    batched = tmp_path / "batched.pbtxt"
    batched.write_text(triton_config("m", manifest, max_batch_size=4, options=options))
    fixed = tmp_path / "fixed.pbtxt"
    fixed.write_text(triton_config("m", manifest, max_batch_size=0, options=options))
    got_batched, got_fixed = parse_configs(batched, fixed)
    assert [(t["name"], t["data_type"], t["dims"]) for t in got_batched["input"]] == [
        (odd, "TYPE_FP32", ["8"]),
        ("ids", "TYPE_INT64", ["4"]),
    ]
    # A [batch] tensor: one element per frame, reshaped to no dims at all.
    assert got_batched["output"][0] == {
        "name": "score", "data_type": "TYPE_FP32", "dims": ["1"], "reshape": {},
    }  # fmt: skip
    assert got_batched["output"][1]["data_type"] == "TYPE_BOOL"
    assert got_batched["max_batch_size"] == 4 and "dynamic_batching" in got_batched
    assert got_batched["instance_group"] == [{"count": 3, "kind": "KIND_CPU"}]
    # A tail with a fixed batch of 1: no batching, the full shapes.
    assert "max_batch_size" not in got_fixed and "dynamic_batching" not in got_fixed
    assert [t["dims"] for t in got_fixed["input"]] == [["1", "8"], ["1", "4"]]
    assert [t["dims"] for t in got_fixed["output"]] == [["1"], ["1", "2"]]


def _copy_version(repo: Path, tmp_path: Path, edit: dict[str, Any]) -> Path:
    """A one-version copy of digits_cnn version 1 whose manifest has ``edit`` applied."""
    root = tmp_path / "edited"
    shutil.copytree(repo / "digits_cnn" / "1", root / "digits_cnn" / "1")
    path = root / "digits_cnn" / "1" / "manifest.json"
    manifest = json.loads(path.read_text())
    for key, value in edit.items():
        if key.startswith("crossing_"):
            manifest["crossing"][0][key.removeprefix("crossing_")] = value
        else:
            manifest[key] = value
    path.write_text(json.dumps(manifest))
    return root


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("tampered", "sha256"),
        ("named_index", "'__<digits>'"),
        ("runtime", "'pt2e-int8' runtime"),
        ("batch_dim", "along dim 1; Triton batches along the first dimension only"),
        ("inside", "inside the repository"),
        ("stale", "already holds version 2"),
        ("no_model", "has no model 'nope'"),
        ("format", "invalid choice: 'onnx'"),
        ("missing", "no such directory"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    case: str,
    expected: str,
    digits_repo: tuple[Path, Planner],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    repo, _ = digits_repo
    out = tmp_path / "triton"
    args = ["--format", "triton"]
    if case == "tampered":
        source = _copy_version(repo, tmp_path, {})
        tail = source / "digits_cnn" / "1" / "tail.pt2"
        data = bytearray(tail.read_bytes())
        data[len(data) // 2] ^= 0xFF
        tail.write_bytes(bytes(data))
    elif case == "named_index":
        source = _copy_version(repo, tmp_path, {"crossing_name": "x__1"})
    elif case == "batch_dim":
        source = _copy_version(repo, tmp_path, {"crossing_batch_dim": 1})
    elif case == "runtime":
        source = _copy_version(repo, tmp_path, {"runtime": {"tail.pt2": "pt2e-int8"}})
    elif case == "inside":
        source, out = repo, repo / "triton"
    elif case == "stale":
        source = _copy_version(repo, tmp_path, {})
        (out / "digits_cnn" / "2").mkdir(parents=True)
    elif case == "no_model":
        source, args = repo, [*args, "--model", "nope"]
    elif case == "format":
        source, args = repo, ["--format", "onnx"]
    else:
        source = tmp_path / "absent"
    code, _, err = run_cli("repository", "export", str(source), str(out), *args, capsys=capsys)
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1, err
    assert expected in err, err
    assert "Traceback" not in err


def test_options_are_checked_where_they_are_made() -> None:
    for bad in ({"max_batch": 0}, {"batch_delay_us": -1}, {"instances": 65}, {"max_batch": True}):
        with pytest.raises(TritonExportError, match=next(iter(bad))):
            TritonOptions(**bad)
