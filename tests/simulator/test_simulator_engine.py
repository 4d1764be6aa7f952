"""The local engine: the warm-up compiles every kernel a run calls, and is reported apart."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from simulator import engine
from simulator.fleet import compile_scenario
from tests.simulator.test_simulator_determinism import mixed_scenario

ROOT = Path(__file__).resolve().parents[2]

# In a fresh interpreter (numba's dispatchers start with no signature, whatever its disk
# cache holds): the signatures of every simulator kernel after the warm-up and after a
# run of the scenario that exercises every mechanism.
FRESH_PROCESS = """
import json, sys
from numba.core.registry import CPUDispatcher
from simulator.engine import simulate, warm_up
from simulator.fleet import compile_scenario
from tests.simulator.test_simulator_determinism import mixed_scenario

def signatures():
    return {
        f"{name}.{attr}": sorted(map(str, value.signatures))
        for name, module in list(sys.modules.items()) if name.startswith("simulator")
        for attr, value in vars(module).items() if isinstance(value, CPUDispatcher)
    }

plan = compile_scenario(mixed_scenario())
before = signatures()
warm_up(plan)
warm = signatures()
simulate(plan, shards=3)
print(json.dumps({"before": before, "warm": warm, "after": signatures()}))
"""


def test_warm_up_compiles_every_kernel_the_run_calls() -> None:
    out = subprocess.run(
        [sys.executable, "-c", FRESH_PROCESS], capture_output=True, text=True, cwd=ROOT
    )
    assert out.returncode == 0, out.stderr
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    assert not any(seen["before"].values())  # nothing compiled or loaded yet
    assert sum(map(len, seen["warm"].values())) >= 10
    assert seen["after"] == seen["warm"]  # the run compiled nothing new


def test_compile_time_is_reported_apart(monkeypatch: pytest.MonkeyPatch) -> None:
    plan = compile_scenario(mixed_scenario(duration_s=2))
    warmed: list[Any] = []
    monkeypatch.setattr(engine, "warm_up", lambda p: warmed.append(p) or 123.0)
    result = engine.simulate(plan)
    assert warmed == [plan]
    out = result.to_json()
    assert out["compile_s"] == 123.0 and result.compile_s == 123.0
    assert out["wall_s"] < 123.0


def test_the_miniature_runs_every_option_of_every_group() -> None:
    plan = compile_scenario(mixed_scenario())
    mini = engine.miniature(plan)
    # Each group once with its policy, then once per option with that option fixed.
    expected = [(g.name, g.policy.name, len(g.options)) for g in plan.groups]
    got = [(g.name, g.policy.name, len(g.options)) for g in mini.groups]
    assert got[0] == expected[0] and got[1:3] == [("roaming", "fixed", 1)] * 2
    assert len(mini.groups) == sum(1 + len(g.options) for g in plan.groups)
    assert [g.count for g in mini.groups] == [1] * len(mini.groups)
    assert [g.first_gid for g in mini.groups] == list(range(len(mini.groups)))
    assert all(g.arrival == "periodic" and g.jitter_s == 0 for g in mini.groups)
    assert mini.sites is plan.sites and len(mini.windows) == 2
    assert mini.duration_s == pytest.approx(engine.WARM_UP_FRAMES / 15)  # slowest group
