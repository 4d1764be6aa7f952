"""The CLI's JSON contracts and its one-line errors, run as a real subprocess."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SMALL = ["--model", "alexnet", "--input-shape", "1,3,64,64"]


def edgecut(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "edgecut.cli", *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=cwd,
        env=env,
    )


def ok_json(*args: str) -> dict:
    result = edgecut(*args, "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_plan_json_contract() -> None:
    data = ok_json(
        "plan",
        *SMALL,
        "--edge",
        "rpi4",
        "--cloud",
        "x86-server",
        "--bandwidth-mbps",
        "10",
        "--rtt-ms",
        "20",
    )
    assert {
        "model",
        "solver",
        "objective",
        "edge_nodes",
        "cut",
        "predicted",
        "objective_value",
        "edge_only_ms",
        "cloud_only_ms",
        "solve_ms",
    } <= set(data)
    assert set(data["predicted"]) >= {
        "edge_ms",
        "transfer_ms",
        "cloud_ms",
        "total_ms",
        "edge_energy_mj",
    }
    assert (
        data["model"] == "alexnet"
        and data["objective"] == "latency"
        and data["edge_nodes"][0] == "x"
    )
    for t in data["cut"]:
        assert set(t) >= {"name", "shape", "dtype", "bytes"}
    p = data["predicted"]
    assert p["total_ms"] == pytest.approx(data["objective_value"])
    assert p["total_ms"] <= min(data["edge_only_ms"], data["cloud_only_ms"]) + 1e-9


def test_cut_after_and_objectives() -> None:
    data = ok_json("plan", *SMALL, "--cut-after", "features.2", "--objective", "energy")
    assert data["solver"] == "fixed" and data["edge_nodes"][-1] == "features.2"
    assert [t["name"] for t in data["cut"]] == ["features.2"]
    assert data["objective_value"] == pytest.approx(data["predicted"]["edge_energy_mj"])


def test_sweep_bandwidth_table() -> None:
    data = ok_json(
        "plan",
        *SMALL,
        "--edge",
        "rpi4",
        "--cloud",
        "a100",
        "--rtt-ms",
        "5",
        "--sweep-bandwidth",
        "0.1:1000",
    )
    bps = data["breakpoints"]
    assert bps[0]["min_mbps"] == pytest.approx(0.1) and bps[-1]["max_mbps"] == pytest.approx(1000)
    for a, b in itertools.pairwise(bps):
        assert a["max_mbps"] == pytest.approx(b["min_mbps"])
    assert all(
        set(e) >= {"min_mbps", "max_mbps", "edge_nodes", "total_ms_at_min", "total_ms_at_max"}
        for e in bps
    )


def test_profile_json_contract() -> None:
    data = ok_json("profile", *SMALL, "--device", "jetson-nano")
    assert set(data) >= {"model", "device", "total_ms", "layers"}
    assert data["total_ms"] == pytest.approx(sum(layer["ms"] for layer in data["layers"]))
    assert set(data["layers"][1]) >= {"name", "op", "flops", "out_bytes", "ms"}


def test_profile_host_measures() -> None:
    data = ok_json("profile", *SMALL, "--device", "host", "--repeats", "2")
    assert data["device"] == "host" and data["total_ms"] > 0
    assert any(layer["ms"] > 0 for layer in data["layers"])


def test_models_and_devices() -> None:
    names = {m["name"] for m in ok_json("models")["models"]}
    assert {
        "alexnet",
        "vgg16",
        "resnet18",
        "resnet34",
        "resnet50",
        "mobilenet_v2",
        "googlenet",
        "digits_cnn",
    } <= names
    devices = ok_json("devices")
    assert {"rpi4", "jetson-nano", "jetson-orin-nano", "x86-server", "a100", "host"} <= {
        d["name"] for d in devices["devices"]
    }
    assert {"3g", "lte", "wifi", "5g", "ethernet"} <= {n["name"] for n in devices["networks"]}


def test_plan_file_then_split(tmp_path: Path) -> None:
    plan_path = tmp_path / "plan.json"
    result = edgecut("plan", *SMALL, "--cut-after", "features.5", "--out", str(plan_path))
    assert result.returncode == 0, result.stderr
    manifest = ok_json("split", *SMALL, "--plan", str(plan_path), "--out", str(tmp_path / "art"))
    assert [t["name"] for t in manifest["crossing"]] == ["features.5"]
    assert (tmp_path / "art" / "head.pt2").is_file() and (tmp_path / "art" / "tail.pt2").is_file()


def test_plot(tmp_path: Path) -> None:
    png = tmp_path / "plan.png"
    result = edgecut("plan", *SMALL, "--plot", str(png))
    assert result.returncode == 0, result.stderr
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000


def test_plan_flags_offer_the_registered_solvers_and_objectives() -> None:
    from partitioner.pricing.cost import OBJECTIVES
    from partitioner.solve import SOLVERS

    result = edgecut("plan", "--help")
    assert result.returncode == 0, result.stderr
    text = " ".join(result.stdout.split())
    assert ", ".join(OBJECTIVES) in text and ", ".join(SOLVERS.names()) in text


BAD_FILE = "import torch\ndef make():\n    return 42\n"


@pytest.mark.parametrize(
    "args,expected",
    [
        (["plan", "--model", "resnet19"], "unknown zoo model 'resnet19'"),
        (["plan", *SMALL, "--edge", "rpi5"], "unknown device 'rpi5'"),
        (["plan", "--model", "no/such/file.py:make", "--input-shape", "1,3,8,8"], "does not exist"),
        (
            ["plan", "--model", "{bad}:make", "--input-shape", "1,3,8,8"],
            "to return a torch.nn.Module; got builtins.int",
        ),
        (["plan", "--model", "{bad}:nothere", "--input-shape", "1,3,8,8"], "nothere"),
        (["plan", "--model", "alexnet", "--input-shape", "1,3,x,64"], "--input-shape"),
        (["plan", *SMALL, "--bandwidth-mbps", "0"], "must be a finite number > 0"),
        (["plan", *SMALL, "--bandwidth-mbps", "-3"], "must be a finite number > 0"),
        (["plan", *SMALL, "--cut-after", "features.99"], "no node named 'features.99'"),
        (["plan", *SMALL, "--sweep-bandwidth", "10:1"], "LO:HI"),
        (["plan", *SMALL, "--network", "ltee"], "unknown network 'ltee'"),
        (["plan", *SMALL, "--rtt-ms", "-1"], "RTT must be a finite number >= 0"),
        (["plan", *SMALL, "--codec", "int9"], "unknown codec 'int9'"),
        (["plan", *SMALL, "--edge-dtype", "float64"], "has no float64 compute"),
        (["plan", *SMALL, "--solver", "mincutt"], "invalid choice: 'mincutt'"),
        (["plan", *SMALL, "--objective", "speed"], "invalid choice: 'speed'"),
        (["profile", *SMALL, "--device", "rpi4", "--dtype", "int4"], "has no int4 compute"),
        (["profile", *SMALL, "--device", "a1000"], "unknown device 'a1000'"),
        (["split", *SMALL, "--plan", "missing.json", "--out", "x"], "no such file"),
        (
            ["plan", "--model", "alexnet", "--input-shape", "3,224,224"],
            "expected N,C,H,W with the batch first, e.g. 1,3,224,224",
        ),
        (["plan", *SMALL, "--out", "p.json", "--plot", "nodir/p.png"], "no such directory"),
    ],
)
def test_bad_input_is_one_line_exit_2(tmp_path: Path, args: list[str], expected: str) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text(BAD_FILE)
    args = [a.replace("{bad}", str(bad)) for a in args]
    result = edgecut(*args, cwd=tmp_path)
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = [
        line
        for line in result.stderr.splitlines()
        if line.strip() and "Warning" not in line and not line.startswith(("W1", "  "))
    ]
    assert "Traceback" not in result.stderr
    assert len(lines) == 1, result.stderr
    assert expected.lower() in lines[0].lower(), lines[0]
