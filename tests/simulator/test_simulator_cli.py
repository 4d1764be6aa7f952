"""``edgecut simulate`` and ``edgecut sweep`` without Ray: the JSON contract and the files."""

from __future__ import annotations

import json
import subprocess
import sys
from contextlib import nullcontext
from pathlib import Path

import pyarrow.parquet as pq
import pytest

import edgecut.output
from edgecut.cli import main

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "scenarios" / "quickstart.yaml"
LATENCY_KEYS = {"p50", "p95", "p99", "mean"}


def run_json(argv: list[str], capsys) -> dict:
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)


def test_simulate_json_contract(capsys) -> None:
    out = run_json(
        ["simulate", str(QUICKSTART), "--no-ray", "--json", "--duration-s", "20"], capsys
    )
    for key in (
        "frames",
        "latency_ms",
        "deadline_miss_rate",
        "uplink_bytes",
        "cloud_utilization",
        "wall_s",
        "frames_per_s",
        "compile_s",
        "groups",
        "dropped_frames",
        "throughput_fps",
        "edge_energy_j",
        "sites",
    ):
        assert key in out, key
    assert LATENCY_KEYS <= set(out["latency_ms"])
    assert set(out["groups"]) == {"lte-cams", "wifi-cams"}
    for group in out["groups"].values():
        assert LATENCY_KEYS <= set(group["latency_ms"]) and 0 <= group["deadline_miss_rate"] <= 1
    assert out["frames"] == sum(g["frames"] for g in out["groups"].values())
    assert out["uplink_bytes"] == sum(g["uplink_bytes"] for g in out["groups"].values())
    assert out["frames"] == pytest.approx((100 * 5 + 50 * 2) * 20, rel=0.02)
    assert 0 < out["cloud_utilization"] < 1 and out["transport"] == "local"
    assert out["latency_ms"]["p50"] <= out["latency_ms"]["p95"] <= out["latency_ms"]["p99"]
    timeline = out["sites"]["edge-dc"]["timeline"]
    assert len(timeline["utilization"]) == 60 and timeline["bin_s"] == pytest.approx(20 / 60)


def test_simulate_writes_tables_and_plots(tmp_path: Path, capsys) -> None:
    argv = ["simulate", str(QUICKSTART), "--no-ray", "--duration-s", "10", "--out", str(tmp_path)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "Per-frame latency" in printed and "edge-dc" in printed
    summary = json.loads((tmp_path / "summary.json").read_text())
    cameras = pq.read_table(tmp_path / "cameras.parquet").to_pydict()
    assert len(cameras["camera"]) == 150 and sum(cameras["frames"]) == summary["frames"]
    assert set(cameras["link"][:100]) <= {"TMobile-LTE-short", "Verizon-LTE-short"}
    assert cameras["link"][120].endswith("Mbit/s")
    assert (tmp_path / "cameras.csv").read_text().startswith('"camera","group"')
    for png in ("latency_cdf.png", "cloud_timeline.png"):
        assert (tmp_path / png).read_bytes()[:4] == b"\x89PNG"


def test_simulate_compares_policies(tmp_path: Path, capsys) -> None:
    argv = ["simulate", str(QUICKSTART), "--no-ray", "--json", "--duration-s", "10"]
    argv += ["--policy", "edge-only,cloud-only,fixed:layer1.0.relu1", "--out", str(tmp_path)]
    out = run_json(argv, capsys)
    runs = out["policies"]
    assert list(runs) == ["edge-only", "cloud-only", "fixed:layer1.0.relu1"]
    assert runs["edge-only"]["uplink_bytes"] == 0 and runs["edge-only"]["cloud_utilization"] == 0
    assert runs["cloud-only"]["groups"]["lte-cams"]["cuts"] == {"cloud-only": 1.0}
    assert runs["fixed:layer1.0.relu1"]["groups"]["wifi-cams"]["cuts"] == {
        "after layer1.0.relu1": 1.0
    }
    assert (tmp_path / "latency_cdf.png").exists() and (
        tmp_path / "cloud-only" / "summary.json"
    ).exists()
    assert main(["simulate", str(QUICKSTART), "--no-ray", "--policy", "fixed"]) == 2
    assert "cut_after" in capsys.readouterr().err


def test_sweep_without_ray(tmp_path: Path, capsys) -> None:
    argv = ["sweep", str(QUICKSTART), "--no-ray", "--cuts", "cloud-only,layer1.0.relu1,edge-only"]
    argv += ["--bandwidths", "1,100", "--fleet-sizes", "3,30", "--metric", "p95", "--json"]
    data = run_json(argv, capsys)
    assert data["cuts"] == ["cloud-only", "after layer1.0.relu1", "edge-only"]
    assert data["fleet_sizes"] == [3, 30] and data["bandwidths_mbps"] == [1.0, 100.0]
    assert len(data["cells"]) == 3 * 2 * 2 and len(data["best"]) == 4
    slow = next(b for b in data["best"] if b["bandwidth_mbps"] == 1.0 and b["cameras"] == 3)
    assert slow["cut"] == "edge-only" and slow["matches_planner"]
    assert main(["sweep", str(QUICKSTART), "--no-ray", "--bandwidths", "1", "--cuts", "conv0"]) == 2
    assert "no node named 'conv0'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:  # argparse rejects it: exit 2, one line
        main(["sweep", str(QUICKSTART), "--bandwidths", "0,1"])
    assert info.value.code == 2 and "expected positive numbers" in capsys.readouterr().err


def test_sweep_sets_the_planners_cut_as_simulated_beside_the_best(
    capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The planner's cut is simulated in every condition, also when it is not swept (then
    apart from the grid); the progress bar has its total before the first cell is done."""
    progress: list[tuple[int, int]] = []
    monkeypatch.setattr(
        edgecut.output,
        "progress_bar",
        lambda enabled, label, unit, total: (
            nullcontext(),
            lambda done, total: progress.append((done, total)),
        ),
    )
    argv = ["sweep", str(QUICKSTART), "--no-ray", "--cuts", "layer1.0.relu1,cloud-only"]
    argv += ["--bandwidths", "1,100", "--fleet-sizes", "3,150"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "planner's mean ms (simulated)" in printed
    assert "planner's ms (predicted, idle cloud)" in printed
    data = run_json([*argv, "--json"], capsys)
    assert data["cuts"] == ["after layer1.0.relu1", "cloud-only"] and len(data["cells"]) == 8
    # 8 grid cells and, at 1 Mbit/s where the planner keeps everything on the camera
    # (not a swept cut), its cut for each fleet size: 10 simulations, counted from 0/10.
    assert progress[0] == (0, 10) and progress[-1] == (10, 10) and progress[-2] == (9, 10)
    best = {(b["bandwidth_mbps"], b["cameras"]): b for b in data["best"]}
    cell = {(c["bandwidth_mbps"], c["cameras"], c["cut"]): c["value"] for c in data["cells"]}
    for cameras in (3, 150):
        slow, fast = best[1.0, cameras], best[100.0, cameras]
        assert slow["planner_cut"] == "edge-only" and not slow["matches_planner"]
        assert slow["planner_value"] < slow["value"]  # better than any cut swept
        assert fast["planner_cut"] == "cloud-only"
        assert fast["planner_value"] == cell[100.0, cameras, "cloud-only"]
    # Idle, the simulated cut is the predicted one; with 150 cameras the cloud saturates.
    assert best[100.0, 3]["matches_planner"]
    assert best[100.0, 3]["planner_value"] == pytest.approx(
        best[100.0, 3]["planner_predicted_ms"], rel=0.05
    )
    assert best[100.0, 150]["planner_value"] > 10 * best[100.0, 150]["planner_predicted_ms"]
    assert not best[100.0, 150]["matches_planner"]


def test_simulator_imports_stay_lean() -> None:
    code = (
        "import sys, simulator, simulator.engine, simulator.ray_transport, simulator.scenario;"
        "print(' '.join(m for m in ('ray', 'torch', 'grpc') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == ""
