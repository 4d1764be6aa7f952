"""A camera's window of frames in flight: the fast path against an event-driven reference.

The reference (``oracles.windowed_camera_reference``) walks one camera's frames event by
event: captures, a slot count, the edge processor, the uplink, a cloud server of its own,
hand-over in frame order. Alone on a one-server site without batching, the simulator must
agree with it frame by frame, whatever the window, the late policy, the arrival process
and the cut of time into simulation windows.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from partitioner.errors import ConfigError
from simulator.camera import CameraShard, capture_times
from simulator.engine import simulate
from simulator.fleet import compile_scenario
from simulator.scenario import scenario_from_dict
from tests.simulator.oracles import windowed_camera_reference

RTT_MS = 40.0
MBPS = 2.0  # 8 KB a frame: 33 ms on the uplink


def scenario(
    window: int | None,
    late: str = "queue",
    *,
    arrival: str = "periodic",
    fps: float = 20.0,
    window_s: float | None = None,
    policy: dict[str, Any] | None = None,
) -> dict[str, Any]:
    group: dict[str, Any] = {
        "name": "cam",
        "count": 1,
        "fps": fps,
        "arrival": arrival,
        "model": "digits_cnn",
        "device": "rpi4",
        "network": {"mbps": MBPS, "rtt_ms": RTT_MS},
        "late": late,
    }
    if window is not None:
        group["window"] = window
    data: dict[str, Any] = {
        "name": "window",
        "seed": 3,
        "duration_s": 6.0,
        "deadline_ms": 10_000,
        "policy": policy or {"name": "fixed", "cut_after": "relu1"},
        "fleet": [group],
        "cloud": [{"name": "dc", "servers": 1}],
    }
    if window_s is not None:
        data["window_s"] = window_s
    return data


def _reference(plan: Any, t: np.ndarray, window: int, drop: bool) -> tuple[Any, Any]:
    group = plan.groups[0]
    (option,) = group.options
    n = t.size
    q = group.option_queue[0]
    cloud_s = plan.sites[0].queue_batch_s[q, 0] if option.uses_cloud else 0.0
    return windowed_camera_reference(
        t,
        [option.edge_s] * n,
        [option.uses_cloud] * n,
        [option.wire_bits] * n,
        rate_bps=MBPS * 1e6,
        rtt_s=group.link.rtt_s,
        cloud_s=[cloud_s] * n,
        back_s=group.link.back_s,
        window=window,
        drop=drop,
    )


def _captures(data: dict[str, Any]) -> np.ndarray:
    """The camera's capture times (periodic phase, Poisson draws), as its model draws them."""
    plan = compile_scenario(scenario_from_dict(data))
    b = CameraShard(plan, 0, 1).blocks[0]
    _, t, _ = capture_times(
        b.kind, b.next_k, b.next_t, b.start_s, plan.groups[0].fps, b.key[0], b.key[1],
        b.arrival_tag, b.cam_index, plan.duration_s,
    )  # fmt: skip
    return t


@pytest.mark.parametrize("arrival", ["periodic", "poisson"])
@pytest.mark.parametrize(("window", "late"), [(1, "queue"), (1, "drop"), (2, "drop"), (4, "queue")])
def test_window_agrees_frame_by_frame_with_the_event_driven_camera(
    window: int, late: str, arrival: str
) -> None:
    data = scenario(window, late, arrival=arrival)
    t = _captures(data)
    for window_s in (0.37, 2.0):
        plan = compile_scenario(scenario_from_dict({**data, "window_s": window_s}))
        result = simulate(plan)
        start, returned = _reference(plan, t, window, late == "drop")
        taken = ~np.isnan(start)
        assert result.stats.generated[0] == t.size
        assert result.stats.dropped[0] == int((~taken).sum())
        # One camera, one server: the site serves (and samples) in frame order.
        np.testing.assert_allclose(
            result.samples[0], (returned - t)[taken], rtol=0, atol=1e-9, err_msg=f"{window_s=}"
        )


@pytest.mark.parametrize(("window", "late"), [(1, "queue"), (1, "drop"), (2, "queue")])
def test_on_a_trace_link_the_fixed_point_agrees_with_the_event_driven_camera(
    window: int, late: str, tmp_path: Path
) -> None:
    # A trace of a constant 2 Mbit/s: the trace path (fixed point over the vectorised
    # stages) must find what the one-pass kernel and the reference find.
    trace = tmp_path / "flat.json"
    trace.write_text(json.dumps([[0, MBPS], [1, MBPS]]))
    data = scenario(window, late)
    data["fleet"][0]["network"] = {"traces": [str(trace)], "rtt_ms": RTT_MS}
    plan = compile_scenario(scenario_from_dict(data))
    assert plan.groups[0].link.kind == "traces"
    t = _captures(data)
    result = simulate(plan)
    start, returned = _reference(plan, t, window, late == "drop")
    taken = ~np.isnan(start)
    assert result.stats.dropped[0] == int((~taken).sum())
    assert (late == "drop") == (result.stats.dropped[0] > 0)
    assert (window, late) == (1, "queue") or result.samples[0].max() < 0.2
    assert (window, late) != (1, "queue") or result.samples[0].max() > 1.0  # falls behind
    np.testing.assert_allclose(result.samples[0], (returned - t)[taken], rtol=0, atol=1e-9)


def test_the_window_bounds_what_the_camera_sustains() -> None:
    # 20 fps (50 ms); a round trip of 75-100 ms: stop-and-wait skips every other frame.
    one = simulate(compile_scenario(scenario_from_dict(scenario(1, "drop"))))
    four = simulate(compile_scenario(scenario_from_dict(scenario(4, "drop"))))
    unbounded = simulate(compile_scenario(scenario_from_dict(scenario(None))))
    frames = int(one.stats.generated[0])
    assert one.stats.dropped[0] == frames // 2
    assert four.stats.dropped[0] == 0 == unbounded.stats.dropped[0]
    # Four in flight keep up (the uplink, 33 ms a frame, is the bottleneck): the same
    # latencies as the unbounded camera.
    np.testing.assert_allclose(four.samples[0], unbounded.samples[0], rtol=0, atol=1e-12)
    # Queued stop-and-wait falls ever further behind.
    queued = simulate(compile_scenario(scenario_from_dict(scenario(1, "queue"))))
    assert queued.stats.dropped[0] == 0 and queued.samples[0][-1] > 1.0


def test_local_frames_hold_their_slot_until_their_head_is_done() -> None:
    # An edge-only head takes 5 ms (200 frames/s at most); at 300 fps frames come every
    # 3.3 ms. Stop-and-wait skips every other frame, a window of 2 one in three.
    dropped = []
    for window in (1, 2):
        data = scenario(window, "drop", policy={"name": "edge-only"}, fps=300.0)
        data["cloud"] = []
        plan = compile_scenario(scenario_from_dict(data))
        t = _captures(data)
        result = simulate(plan)
        start, returned = _reference(plan, t, window, True)
        taken = ~np.isnan(start)
        assert result.stats.dropped[0] == int((~taken).sum())
        np.testing.assert_allclose(result.samples[0], (returned - t)[taken], rtol=0, atol=1e-9)
        dropped.append(result.stats.dropped[0] / t.size)
    assert dropped[0] == pytest.approx(1 / 2, abs=0.01)
    assert dropped[1] == pytest.approx(1 / 3, abs=0.01)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"window": 0}, "fleet[0].window: must be an integer >= 1"),
        ({"window": 2.5}, "fleet[0].window: expected an integer"),
        ({"late": "skip"}, "fleet[0].late: expected one of queue, drop"),
        ({"late": "drop"}, "fleet[0].late: drop skips frames that find the window full"),
        ({"window": 2, "edge_queue_limit": 3}, "fleet[0].window: bounds the camera's frames"),
    ],
)
def test_a_bad_window_is_one_line_naming_the_field(fields: dict[str, Any], message: str) -> None:
    data = scenario(None)
    data["fleet"][0] = {**data["fleet"][0], "late": "queue", **fields}
    with pytest.raises(ConfigError) as info:
        scenario_from_dict(data, source="s.yaml")
    text = str(info.value)
    assert text.startswith("s.yaml: ") and message in text and "\n" not in text
