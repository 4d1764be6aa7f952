"""`edgecut compress` and `edgecut plan --accuracy-budget`: JSON contract, artifact, errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from edgecut.cli import main

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


@pytest.fixture(scope="module")
def plan_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("plan") / "plan.json"
    assert main(["plan", "--model", "digits_cnn", "--cut-after", "relu2", "--out", str(path)]) == 0
    return path


def test_compress_json_contract_and_artifact(plan_file, tmp_path) -> None:
    out = tmp_path / "int8"
    result = subprocess.run(
        [
            *(sys.executable, "-m", "edgecut.cli", "compress", "--model", "digits_cnn"),
            *("--plan", str(plan_file), "--method", "int8", "--codec", "int8+zstd"),
            *("--out", str(out), "--threads", "1", "--json"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert CONTRACT <= set(report)
    assert report["method"] == "int8" and report["codec"] == "int8+zstd"
    assert report["accuracy_before"] - report["accuracy_after"] <= 0.5
    assert report["head_param_bytes_before"] / report["head_param_bytes_after"] >= 3.5
    assert report["cut_bytes_before"] / report["cut_bytes_after"] >= 5.0
    assert report["head_ms_before"] > 0 and report["head_ms_after"] > 0
    assert report["head_flops_after"] == report["head_flops_before"]  # same ops, in int8
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["codec"] == "int8+zstd" and manifest["runtime"] == {"head.pt2": "pt2e-int8"}
    assert manifest["compression"]["report"]["accuracy_after"] == report["accuracy_after"]
    assert set(manifest["files"]) == {"head.pt2", "tail.pt2"}


def _fails(capsys, *argv: str) -> str:
    code = main(list(argv))
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    # Progress lines (one per step off a terminal) may come first; the error is one line.
    errors = [line for line in err.splitlines() if ": error: " in line]
    assert len(errors) == 1 and errors[0] == err.splitlines()[-1], err
    return errors[0]


def test_user_errors_are_one_line(capsys, tmp_path, plan_file) -> None:
    base = ["compress", "--model", "digits_cnn", "--out", str(tmp_path / "o")]
    err = _fails(capsys, *base, "--cut-after", "pool2", "--method", "quantize")
    assert "unknown compression method 'quantize': expected one of distill, int8" in err
    bad = tmp_path / "bad.yaml"
    bad.write_text("prune:\n  ratio: 1.5\n")
    err = _fails(capsys, *base, "--cut-after", "pool2", "--method", "prune", "--config", str(bad))
    assert f"{bad}: prune.ratio: expected a number in (0, 1), got 1.5" in err
    err = _fails(capsys, *base, "--method", "int8")
    assert "expected exactly one of --plan" in err and "got neither" in err
    err = _fails(capsys, *base, "--plan", str(plan_file))
    assert "expected --method distill|int8|lowrank|mixed|nas|prune" in err  # the registry, sorted
    err = _fails(capsys, *base, "--cut-after", "x", "--method", "int8")
    assert "cloud-only" in err
    err = _fails(
        capsys, *base, "--cut-after", "pool2", "--method", "int8", "--accuracy-budget", "1"
    )
    assert "--accuracy-budget applies to --method nas (its search); got --method int8" in err
    err = _fails(capsys, "plan", "--model", "digits_cnn", "--compress", "auto")
    assert "--compress auto needs --accuracy-budget" in err
    err = _fails(
        capsys, "plan", "--model", "digits_cnn", "--accuracy-budget", "1", "--compress", "svd"
    )
    assert "--compress expects auto or a comma list of none, distill" in err
    err = _fails(
        capsys, "plan", "--model", "digits_cnn", "--accuracy-budget", "1", "--cut-after", "pool2"
    )
    assert "drop --cut-after" in err


def test_plan_with_accuracy_budget_then_compress_the_choice(capsys, tmp_path) -> None:
    plan_path = tmp_path / "plan.json"
    code = main(
        [
            *("plan", "--model", "digits_cnn", "--bandwidth-mbps", "2"),
            *("--accuracy-budget", "0.5", "--compress", "int8", "--out", str(plan_path), "--json"),
        ]
    )
    assert code == 0, capsys.readouterr().err
    plan = json.loads(capsys.readouterr().out)
    assert plan == json.loads(plan_path.read_text())
    c = plan["compression"]
    assert c["method"] == "int8" and c["codec"] == plan["codec"]
    assert c["accuracy_before"] - c["accuracy_after"] <= 1.0  # measured on test
    assert c["val_accuracy_before"] - c["val_accuracy_after"] <= 0.5  # the budget: validation
    assert plan["predicted"]["total_ms"] == pytest.approx(plan["objective_value"])
    assert len(plan["edge_nodes"]) > 1  # int8 needs a head: cloud-only is no candidate
    # the chosen combination becomes an artifact without repeating the method or codec
    out = tmp_path / "chosen"
    code = main(
        ["compress", "--model", "digits_cnn", "--plan", str(plan_path), "--out", str(out), "--json"]
    )
    assert code == 0, capsys.readouterr().err
    report = json.loads(capsys.readouterr().out)
    assert report["method"] == "int8" and report["codec"] == plan["codec"]


def test_budget_nothing_meets_names_the_best(capsys, tmp_path) -> None:
    config = tmp_path / "untrained.yaml"
    config.write_text("distill:\n  train: {epochs: 0}\n")
    err = _fails(
        capsys,
        "plan",
        "--model",
        "digits_cnn",
        "--accuracy-budget",
        "0",
        "--compress",
        "distill",
        "--config",
        str(config),
    )
    assert "the best found was distill" in err and "drop" in err


def test_compress_nas_writes_the_head_the_front_and_its_plot(capsys, tmp_path) -> None:
    config = tmp_path / "nas.yaml"
    config.write_text(
        "nas:\n  kernels: [3]\n  widths: [0.5]\n  depths: [1, 2]\n  population: 3\n"
        "  generations: 1\n  finalists: 1\n  quick_val_samples: 100\n"
        "  recalibration_samples: 64\n  supernet: {epochs: 1}\n  finetune: {epochs: 1}\n"
    )
    out = tmp_path / "nas"
    code = main(
        [
            *("compress", "--model", "digits_cnn", "--cut-after", "pool2", "--method", "nas"),
            *("--config", str(config), "--accuracy-budget", "50", "--out", str(out)),
            *("--threads", "1"),
        ]
    )
    assert code == 0, capsys.readouterr().err
    printed = capsys.readouterr().out
    assert (
        "nas on the head cut at pool2" in printed and f"Wrote {out / 'nas_pareto.png'}" in printed
    )
    manifest = json.loads((out / "manifest.json").read_text())
    report = manifest["compression"]["report"]
    note = report["notes"]["nas"]
    assert report["method"] == "nas" and report["tail_unchanged"] is True
    assert note["accuracy_budget"] == 50.0 and note["device"] == "rpi4"
    assert {s["kernel"] for c in note["finalists"] for s in c["stages"]} == {3}
    assert (out / "nas_pareto.png").stat().st_size > 0
