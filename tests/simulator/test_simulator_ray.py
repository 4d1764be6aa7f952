"""The Ray adapter: one local Ray for this module; results equal the local engine's."""

from __future__ import annotations

import ast
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgecut.cli import main
from simulator import ray_transport
from simulator.engine import simulate
from simulator.fleet import compile_scenario
from simulator.scenario import scenario_from_dict
from simulator.sweep import run_cell, sweep

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def ray_cluster() -> Any:
    import ray

    ray_transport.init_local(
        num_cpus=2,
        include_dashboard=False,
        object_store_memory=256 * 1024**2,
        logging_level=logging.ERROR,
        log_to_driver=False,
    )
    yield ray
    ray.shutdown()


def fleet_dict() -> dict[str, Any]:
    return {
        "name": "ray",
        "seed": 77,
        "duration_s": 20,
        "deadline_ms": 10,
        "window_s": 3.0,
        "policy": {"name": "adaptive", "lag_s": 0.2, "sample_s": 0.5},
        "fleet": [
            {
                "name": "a",
                "count": 31,
                "fps": 25,
                "arrival": "poisson",
                "model": "digits_cnn",
                "device": "rpi4",
                "network": {
                    "traces": ["TMobile-UMTS-driving", "Verizon-LTE-short"],
                    "rtt_ms": 0.5,
                },
            },
            {
                "name": "b",
                "count": 12,
                "fps": 10,
                "model": "digits_cnn",
                "device": "rpi4",
                "policy": "cloud-only",
                "site": "second",
                "network": {"mbps": 2, "rtt_ms": 4},
            },
        ],
        "cloud": [
            {"name": "first", "servers": 1, "service": "exponential", "batching": {"max_batch": 3}},
            {"name": "second", "servers": 2},
        ],
    }


def fleet(**changes: Any) -> Any:
    return scenario_from_dict({**fleet_dict(), **changes})


def _recorder(seen: list[tuple[int, int]]) -> Any:
    return lambda done, total: seen.append((done, total))


def strip(summary: dict[str, Any]) -> dict[str, Any]:
    for key in ("wall_s", "frames_per_s", "compile_s", "shards", "transport"):
        summary.pop(key)
    return summary


def test_ray_equals_local_for_any_number_of_shards(ray_cluster: Any) -> None:
    plan = compile_scenario(fleet())
    local = simulate(plan, shards=1)
    expected = strip(local.to_json())
    for shards in (2, 5):
        seen: list[tuple[int, int]] = []
        remote = ray_transport.simulate(plan, shards=shards, on_window=_recorder(seen))
        assert remote.transport == "ray" and remote.shards == shards
        assert remote.compile_s > 0  # the actors warmed up before the clock started
        assert strip(remote.to_json()) == expected
        assert seen == [(i + 1, len(plan.windows)) for i in range(len(plan.windows))]
        for key, column in local.camera_table().items():
            other = remote.camera_table()[key]
            if column.dtype == object:
                assert list(column) == list(other)
            else:
                np.testing.assert_array_equal(column, other)


def test_edge_only_fleet_without_cloud_sites_runs_on_ray(ray_cluster: Any) -> None:
    plan = compile_scenario(fleet(policy="edge-only", cloud=[], fleet=fleet_dict()["fleet"][:1]))
    assert strip(ray_transport.simulate(plan, shards=3).to_json()) == strip(
        simulate(plan).to_json()
    )


def test_map_plans_keeps_the_order(ray_cluster: Any) -> None:
    plans = [compile_scenario(fleet(seed=s, duration_s=2)) for s in (1, 2, 3)]
    got = ray_transport.map_plans(run_cell, plans)
    assert [g["seed"] for g in got] == [1, 2, 3]
    assert got[1]["frames"] == run_cell(plans[1])["frames"]


def sweep_scenario() -> Any:
    return scenario_from_dict(
        {
            "name": "sweep",
            "seed": 3,
            "duration_s": 10,
            "deadline_ms": 50,
            "policy": "edge-only",
            "fleet": [
                {
                    "name": "cams",
                    "count": 20,
                    "fps": 10,
                    "model": "digits_cnn",
                    "device": "rpi4",
                    "network": {"preset": "wifi", "rtt_ms": 0.5},
                }
            ],
            "cloud": [{"name": "dc", "servers": 1}],
        }
    )


def test_sweep_finds_the_planners_cut_when_idle_and_another_when_saturated(
    ray_cluster: Any,
) -> None:
    result = sweep(
        sweep_scenario(),
        cuts="all",
        bandwidths_mbps=[0.2, 5.0],
        fleet_sizes=[20, 500],
        run=lambda plans: ray_transport.map_plans(run_cell, plans),
    )
    best = {(b["cameras"], b["bandwidth_mbps"]): b for b in result.best()}
    assert len(result.cuts) == 17 and len(result.cells) == 17 * 2 * 2
    # 20 cameras at 10 fps barely load the server: the planner's cut is the best one.
    assert best[20, 0.2]["matches_planner"] and best[20, 0.2]["cut"] == "edge-only"
    assert best[20, 5.0]["matches_planner"] and best[20, 5.0]["cut"] == "cloud-only"
    assert best[20, 5.0]["value"] == pytest.approx(best[20, 5.0]["planner_predicted_ms"], rel=0.05)
    # 500 cameras send 1.4 server-seconds of cloud-only work per second: the planner's
    # cut saturates the cloud and the sweep picks another.
    saturated = best[500, 5.0]
    assert not saturated["matches_planner"] and saturated["cut"] != "cloud-only"
    planner_cell = next(
        c for c in result.cells if (c.cameras, c.bandwidth_mbps, c.cut) == (500, 5.0, "cloud-only")
    )
    assert planner_cell.summary["cloud_utilization"] > 0.99
    # The table sets the planner's cut as simulated beside the best, not its idle-cloud
    # prediction: like with like.
    assert saturated["planner_value"] == planner_cell.value > saturated["value"]
    assert saturated["planner_value"] > 10 * saturated["planner_predicted_ms"]
    assert best[20, 5.0]["planner_value"] == best[20, 5.0]["value"]


def test_cli_simulate_and_sweep_on_ray(ray_cluster: Any, tmp_path: Path, capsys) -> None:
    path = ROOT / "scenarios" / "quickstart.yaml"
    assert main(["simulate", str(path), "--json", "--duration-s", "10", "--shards", "2"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["transport"] == "ray" and out["shards"] == 2
    assert main(["simulate", str(path), "--json", "--duration-s", "10", "--no-ray"]) == 0
    assert strip(json.loads(capsys.readouterr().out)) == strip(out)
    argv = ["sweep", str(path), "--cuts", "edge-only,cloud-only", "--bandwidths", "2,50"]
    assert main([*argv, "--json", "--out", str(tmp_path)]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["cuts"] == ["edge-only", "cloud-only"] and len(data["cells"]) == 4
    assert (tmp_path / "sweep.png").stat().st_size > 0
    assert json.loads((tmp_path / "sweep.json").read_text())["best"] == data["best"]


def test_only_the_adapter_imports_ray() -> None:
    importers = []
    for path in ROOT.glob("*/**/*.py"):
        if ".venv" in path.parts or "tests" in path.parts:
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            if any(n == "ray" or n.startswith("ray.") for n in names):
                importers.append(str(path.relative_to(ROOT)))
    assert sorted(set(importers)) == ["simulator/ray_transport.py"]


def test_a_local_ray_that_times_out_at_startup_is_started_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import ray

    calls: list[str] = []

    def init(**options: Any) -> None:
        calls.append("init")
        if calls.count("init") == 1:
            raise Exception("The current node timed out during startup. ...")

    monkeypatch.setattr(ray, "init", init)
    monkeypatch.setattr(ray, "shutdown", lambda: calls.append("shutdown"))
    ray_transport.init_local(num_cpus=1)
    assert calls == ["init", "shutdown", "init"]

    calls.clear()
    monkeypatch.setattr(ray, "init", lambda **o: calls.append("init") or 1 / 0)
    with pytest.raises(ZeroDivisionError):  # any other failure is not retried
        ray_transport.init_local(num_cpus=1)
    assert calls == ["init"]
