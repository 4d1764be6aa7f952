"""End to end, scenario -> compile -> simulate, against queueing theory at load 0.8.

A fleet of Poisson cameras sends its inputs (cloud-only) over links so fast that the
cloud site sees a Poisson stream; the site's servers then form an M/M/1, M/D/1 or M/M/4
queue whose service time is the profile's tail time (times Exp(1) when exponential).
Seeded, so each run gives the same numbers; the errors measured over seeds 1-3 were
at most 1.1 %, so the 3 % tolerance is several standard errors wide.
"""

from __future__ import annotations

import math
from typing import Any

import pytest

from simulator.engine import simulate
from simulator.fleet import compile_scenario
from simulator.scenario import scenario_from_dict

RHO = 0.8
CAMERAS = 1000


def poisson_fleet(servers: int, service: str, rate_hz: float, frames: int) -> Any:
    return scenario_from_dict(
        {
            "name": "validation",
            "seed": 1,
            "duration_s": frames / rate_hz,
            "deadline_ms": 1e9,
            "policy": "cloud-only",
            "fleet": [
                {
                    "name": "cams",
                    "count": CAMERAS,
                    "fps": rate_hz / CAMERAS,
                    "arrival": "poisson",
                    "model": "digits_cnn",
                    "device": "rpi4",
                    "network": {"mbps": 1e6, "rtt_ms": 0},
                }
            ],
            "cloud": [{"name": "dc", "servers": servers, "service": service}],
        }
    )


@pytest.fixture(scope="module")
def mu() -> float:
    """Service rate of the digits_cnn tail on the cloud preset (1 / mean service time)."""
    plan = compile_scenario(poisson_fleet(1, "profile", 100.0, 100))
    return 1.0 / float(plan.sites[0].queue_batch_s[0, 0])


def run(servers: int, service: str, rate_hz: float, frames: int) -> dict[str, Any]:
    return simulate(compile_scenario(poisson_fleet(servers, service, rate_hz, frames))).to_json()


def erlang_c(servers: int, offered: float) -> float:
    head = sum(offered**k / math.factorial(k) for k in range(servers))
    tail = offered**servers / math.factorial(servers) * servers / (servers - offered)
    return tail / (head + tail)


def test_mm1_mean_sojourn(mu: float) -> None:
    lam = RHO * mu
    out = run(1, "exponential", lam, 2_000_000)
    assert out["frames"] == pytest.approx(2_000_000, rel=0.01)
    sojourn_s = out["groups"]["cams"]["stages_ms"]["cloud"] / 1e3
    assert sojourn_s == pytest.approx(1 / (mu - lam), rel=0.03)
    assert out["cloud_utilization"] == pytest.approx(RHO, rel=0.03)


def test_md1_mean_wait_pollaczek_khinchine(mu: float) -> None:
    lam = RHO * mu
    out = run(1, "profile", lam, 2_000_000)
    wait_s = out["groups"]["cams"]["stages_ms"]["cloud_wait"] / 1e3
    assert wait_s == pytest.approx(RHO / (2 * mu * (1 - RHO)), rel=0.03)
    # Deterministic service: sojourn = wait + the profile's time, frame by frame.
    stages = out["groups"]["cams"]["stages_ms"]
    assert stages["cloud"] - stages["cloud_wait"] == pytest.approx(1e3 / mu, rel=1e-9)


def test_mm4_wait_erlang_c_and_littles_law(mu: float) -> None:
    servers = 4
    lam = RHO * servers * mu
    assert erlang_c(servers, lam / mu) == pytest.approx(0.596432, abs=1e-6)
    out = run(servers, "exponential", lam, 4_000_000)
    stages = out["groups"]["cams"]["stages_ms"]
    mean_wait = erlang_c(servers, lam / mu) / (servers * mu - lam)
    assert stages["cloud_wait"] / 1e3 == pytest.approx(mean_wait, rel=0.03)
    # Little's law on the site: time-average number in the cloud system (its timeline)
    # equals the arrival rate times the mean sojourn.
    site = out["sites"]["dc"]
    lam_hat = site["frames"] / out["duration_s"]
    assert site["mean_in_system"] == pytest.approx(lam_hat * stages["cloud"] / 1e3, rel=0.005)
    assert site["mean_queue"] == pytest.approx(lam_hat * stages["cloud_wait"] / 1e3, rel=0.005)
    assert out["cloud_utilization"] == pytest.approx(RHO, rel=0.03)


def test_unloaded_fleet_sees_the_cost_models_latency_frame_by_frame() -> None:
    """Periodic cameras, a constant link they never saturate, an idle cloud: every frame
    takes exactly what the planner predicts for its cut, and the stages add up."""
    scenario = scenario_from_dict(
        {
            "name": "unloaded",
            "seed": 4,
            "duration_s": 20,
            "deadline_ms": 1000,
            "policy": {"name": "fixed", "cut_after": "pool1"},
            "fleet": [
                {
                    "name": "cams",
                    "count": 50,
                    "fps": 10,
                    "model": "digits_cnn",
                    "device": "rpi4",
                    "codec": "fp16",
                    "network": {"mbps": 8, "rtt_ms": 30},
                }
            ],
            "cloud": [{"name": "dc", "servers": 64}],
        }
    )
    plan = compile_scenario(scenario)
    option = plan.groups[0].options[0]
    predicted_ms = option.predicted_ms["total_ms"]
    result = simulate(plan)
    out = result.to_json()
    assert out["frames"] == 50 * 200 and out["dropped_frames"] == 0
    samples_ms = result.all_samples() * 1e3
    assert samples_ms.min() == pytest.approx(predicted_ms, abs=1e-9)
    assert samples_ms.max() == pytest.approx(predicted_ms, abs=1e-9)
    stages = out["stages_ms"]
    transfer_ms = option.predicted_ms["transfer_ms"]
    assert stages["uplink"] == pytest.approx(transfer_ms, abs=1e-9)
    assert stages["cloud_wait"] == pytest.approx(0.0, abs=1e-12)
    assert stages["edge"] + stages["uplink"] + 30 + stages["cloud"] == pytest.approx(
        predicted_ms, abs=1e-9
    )
    assert out["uplink_bytes"] == option.wire_bytes * 50 * 200
    # The simulator's edge energy is compute and radio; the cost model's also counts the
    # camera idling while its frame is on the wire and in the cloud.
    idle_mj = plan.groups[0].idle_w * (transfer_ms + 30 + stages["cloud"])
    assert out["edge_energy_mj_per_frame"] == pytest.approx(
        option.predicted_ms["edge_energy_mj"] - idle_mj, rel=1e-9
    )
