"""The acceptance figures of every method, measured on digits_cnn and the digits test split."""

from __future__ import annotations

import platform

import pytest
import torch

from partitioner.compress import METHODS
from partitioner.compress.measure import accuracy, cut_bytes
from partitioner.deploy.artifact import load_split
from partitioner.deploy.runtimes import x86_lowering_available

from .test_nas import TINY as TINY_NAS

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")

CONTRACT = {
    "method",
    "accuracy_before",
    "accuracy_after",
    "head_param_bytes_before",
    "head_param_bytes_after",
    "head_flops_before",
    "head_flops_after",
    "head_ms_before",
    "head_ms_after",
    "cut_bytes_before",
    "cut_bytes_after",
}


def drop(report: dict) -> float:
    return report["accuracy_before"] - report["accuracy_after"]


def test_uncompressed_model_is_the_reference(compressed) -> None:
    report, _ = compressed("int8")
    assert report["accuracy_before"] > 99.0  # 449 of 450 digits


@pytest.mark.parametrize("method", [m.name for m in METHODS.list()])
def test_every_method_keeps_the_cut_and_the_tail(method, compressed, baseline) -> None:
    # nas runs a test-sized search here (test_nas.py); its accuracy is the benchmark's
    # business (benchmarks/compression_methods.py), the others' is checked with defaults
    report, out = compressed(method, **({"nas": TINY_NAS} if method == "nas" else {}))
    assert CONTRACT <= set(report) and report["method"] == method
    assert report["tail_unchanged"] is True
    assert (out / "tail.pt2").read_bytes() == (baseline / "tail.pt2").read_bytes()
    assert report["cut_bytes_after"] == report["cut_bytes_before"]  # codec none: same tensors
    if method != "nas":
        assert drop(report) <= 2.0


def test_int8_head(compressed) -> None:
    report, out = compressed("int8")
    assert drop(report) <= 0.5
    assert report["head_param_bytes_before"] / report["head_param_bytes_after"] >= 3.5
    assert load_split(out).manifest["runtime"] == {"head.pt2": "pt2e-int8"}
    # what the pt2e-int8 runtime did with the head when the report loaded it on this host
    if x86_lowering_available():  # one int8 convolution per conv of the head
        assert report["runtime"] == "int8 lowered to oneDNN kernels (x86, 3 int8 ops)"
    else:
        assert report["runtime"] == (
            f"int8 reference graph (no int8 lowering for {platform.machine()})"
        )


def _state(path):
    return {k: v for k, v in torch.export.load(path).state_dict.items() if k.endswith("weight")}


def test_structured_pruning_removes_half_the_channels(compressed, baseline) -> None:
    report, out = compressed("prune")  # the default ratio: 0.5
    assert report["notes"]["prune"]["ratio"] == 0.5
    assert report["head_flops_before"] / report["head_flops_after"] >= 1.8
    assert drop(report) <= 1.0
    notes = report["notes"]["prune"]
    assert notes["groups_pruned"] >= 2 and notes["channels_after"] < notes["channels_before"]
    before, after = _state(baseline / "head.pt2"), _state(out / "head.pt2")
    # the shipped tensors are physically smaller: conv1 and conv2 lost half their filters,
    # conv3 (whose channels cross the cut) kept its 128 but reads half as many inputs
    assert after["conv1.weight"].shape[0] == before["conv1.weight"].shape[0] // 2
    assert after["conv2.weight"].shape[:2] == (32, 16)
    assert after["conv3.weight"].shape[:2] == (128, 32)
    assert report["head_param_bytes_after"] < report["head_param_bytes_before"] / 2


def test_low_rank(compressed) -> None:
    report, _ = compressed("lowrank")
    assert report["head_flops_before"] / report["head_flops_after"] >= 1.5
    assert drop(report) <= 1.0
    assert report["notes"]["lowrank"]["ranks"]


def test_distilled_student(compressed, baseline) -> None:
    report, out = compressed("distill")
    assert report["head_flops_before"] / report["head_flops_after"] >= 3.0
    assert drop(report) <= 2.0
    assert report["notes"]["distill"]["separable"] == ["conv2", "conv3"]
    assert (out / "tail.pt2").read_bytes() == (baseline / "tail.pt2").read_bytes()


def test_mixed_pipeline_prunes_distills_and_quantizes(compressed) -> None:
    report, out = compressed("mixed")
    assert report["notes"]["mixed"]["steps"] == ["prune", "distill", "int8"]
    assert report["head_flops_before"] / report["head_flops_after"] >= 1.8
    assert report["head_param_bytes_before"] / report["head_param_bytes_after"] >= 6
    assert drop(report) <= 1.0
    assert load_split(out).manifest["runtime"] == {"head.pt2": "pt2e-int8"}


def test_compressed_artifact_loads_and_runs_like_any_split(compressed, baseline, digits) -> None:
    _, data = digits
    _, out = compressed("int8")
    plain, small = load_split(baseline), load_split(out)
    for key in ("inputs", "crossing", "outputs", "plan", "dynamic_batch"):
        assert small.manifest[key] == plain.manifest[key]
    # one evaluation function for both: the head of either feeds the same tail
    x, y = data.x_test, data.y_test
    got = accuracy(small.run_head, small.run_tail, x, y)
    assert abs(got - accuracy(plain.run_head, plain.run_tail, x, y)) <= 0.5
    assert small.run(x[:3])[0].shape == (3, 10)  # any batch: the batch stayed symbolic
    assert small.manifest["compression"]["report"]["accuracy_after"] == pytest.approx(got)


@pytest.fixture(scope="module")
def relu2_split(digits, tmp_path_factory):
    """The uncompressed split after relu2: 64x8x8 post-ReLU features cross the cut."""
    planner, _ = digits
    out = planner.split(planner.cut_after("relu2"), tmp_path_factory.mktemp("relu2") / "split")
    return load_split(out)


def test_feature_codec_int8_is_four_times_smaller_and_keeps_accuracy(relu2_split, digits) -> None:
    art, (_, data) = relu2_split, digits
    x, y = data.x_test, data.y_test
    raw, _ = cut_bytes(art.run_head, x, "none")
    wire, payload = cut_bytes(art.run_head, x, "int8")
    # one byte per value instead of four; a float32 scale and zero point per channel on top
    assert raw / payload == 4.0 and wire == payload + 64 * 8
    base = accuracy(art.run_head, art.run_tail, x, y)
    assert base - accuracy(art.run_head, art.run_tail, x, y, "int8") <= 0.5


@pytest.mark.parametrize("codec", ["int8+zstd", "int8+lz4"])
def test_feature_codec_with_lossless_stage_on_post_relu_features(
    codec, relu2_split, digits
) -> None:
    art, (_, data) = relu2_split, digits
    x, y = data.x_test, data.y_test
    raw, _ = cut_bytes(art.run_head, x, "none")
    wire, _ = cut_bytes(art.run_head, x, codec)
    assert raw / wire >= 5.0  # side information included
    base = accuracy(art.run_head, art.run_tail, x, y)
    assert base - accuracy(art.run_head, art.run_tail, x, y, codec) <= 0.5


def test_codec_and_compressed_head_together(compressed) -> None:
    report, out = compressed("int8", cut="relu2", codec="int8+zstd")
    assert report["cut_bytes_before"] / report["cut_bytes_after"] >= 5.0
    assert drop(report) <= 0.5
    assert load_split(out).manifest["codec"] == "int8+zstd"  # the edge node reads it here


STUDENT = """
from torch import nn


def small():
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 128, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
    )


def wrong():
    return nn.Conv2d(1, 16, 3, padding=1)
"""


def test_user_student_is_checked_against_the_cut(digits, baseline, tmp_path) -> None:
    from partitioner.compress import config_from_dict
    from partitioner.compress.compressor import compress
    from partitioner.errors import ConfigError

    planner, data = digits
    (tmp_path / "students.py").write_text(STUDENT)
    spec = f"{tmp_path / 'students.py'}:"
    config = config_from_dict(
        {"method": "distill", "distill": {"student": spec + "small", "train": {"epochs": 1}}}
    )
    args = (planner.captured, planner.cut_after("pool2"), config)
    report = compress(*args, tmp_path / "small", data=data, baseline=baseline).to_json()
    assert report["notes"]["distill"]["student"].endswith("students.py:small")
    assert load_split(tmp_path / "small").run(data.x_test[:2])[0].shape == (2, 10)
    wrong = config_from_dict({"method": "distill", "distill": {"student": spec + "wrong"}})
    with pytest.raises(ConfigError, match=r"returns tensors of shapes \[\(2, 16, 8, 8\)\]"):
        compress(planner.captured, planner.cut_after("pool2"), wrong, tmp_path / "w", data=data)
