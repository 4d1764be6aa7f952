"""The camera shard and the cloud site against references: arrivals, uplink, merge order.

The queueing kernels they run (edge queue, batching servers) are tested on their own in
test_simulator_queues.py.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from simulator import streams
from simulator.camera import PERIODIC, POISSON, CameraShard, FrameBatch, capture_times
from simulator.fleet import compile_scenario
from simulator.scenario import scenario_from_dict
from simulator.site import merge_batches
from tests.simulator.oracles import fluid_fifo_departures, fluid_link_reference

# --------------------------------------------------------------------------- camera kernels


def test_periodic_and_poisson_arrivals_do_not_depend_on_windows() -> None:
    key = streams.seed_key(5)
    tag = np.int64(streams.stream_tag(2, streams.ARRIVAL))
    cams = np.arange(4, dtype=np.int64)
    start = np.array([0.0, 0.05, 0.1, 0.19])
    for kind, rate in ((PERIODIC, 5.0), (POISSON, 5.0)):
        one = []
        for edges in ([10.0], [1.3, 2.0, 7.77, 10.0]):
            k = np.zeros(4, dtype=np.int64)
            t = start.copy() if kind == PERIODIC else start + 0.1
            frames: list[list[tuple[float, int]]] = [[] for _ in range(4)]
            for t_end in edges:
                ptr, times, index = capture_times(kind, k, t, start, rate, *key, tag, cams, t_end)
                for c in range(4):
                    frames[c] += list(
                        zip(times[ptr[c] : ptr[c + 1]], index[ptr[c] : ptr[c + 1]], strict=True)
                    )
            one.append(frames)
        assert one[0] == one[1]
        if kind == PERIODIC:  # exactly start + k / rate
            for c in range(4):
                assert [t for t, _ in one[0][c]] == [
                    start[c] + i * 0.2 for i in range(len(one[0][c]))
                ]
                assert len(one[0][c]) == 50


def test_poisson_cameras_are_stationary_from_the_start() -> None:
    """A Poisson camera's count in [0, T) is Poisson of mean rate x T, in every second.

    20,000 cameras at 1 fps: each second's count has mean 20,000 and standard deviation
    141, the 20 s total 400,000 and 632. A camera that waited a uniform phase before its
    first exponential gap (the old start) had 10,000 frames in the first second and
    390,000 in all, 70 and 16 standard deviations away.
    """
    cameras, seconds = 20_000, 20
    scenario = {
        "name": "stationary",
        "seed": 2026,
        "duration_s": seconds,
        "policy": "edge-only",
        "fleet": [
            {
                "name": "cams",
                "count": cameras,
                "fps": 1,
                "arrival": "poisson",
                "model": "digits_cnn",
                "device": "rpi4",
                "network": {"mbps": 10},
            }
        ],
        "cloud": [],
    }
    plan = compile_scenario(scenario_from_dict(scenario))
    shard = CameraShard(plan, 0, cameras)
    block = shard.blocks[0]
    first_s = block.next_t.copy()
    counts = []
    for t_end in range(1, seconds + 1):
        before = int(block.stats.generated.sum())
        shard.step(float(t_end))
        counts.append(int(block.stats.generated.sum()) - before)
    mean = cameras  # per second
    assert max(abs(c - mean) for c in counts) < 4.5 * np.sqrt(mean), counts
    assert abs(sum(counts) - mean * seconds) < 4.5 * np.sqrt(mean * seconds), sum(counts)
    # The first frame is one exponential gap after t = 0: mean 1 s, sd of the mean 0.007 s.
    assert abs(first_s.mean() - 1.0) < 4.5 / np.sqrt(cameras), first_s.mean()


# --------------------------------------------------------------------------- uplink


def uplink_scenario(window_s: float, rtt_ms: float = 0.0) -> dict[str, Any]:
    return {
        "name": "uplink",
        "seed": 9,
        "duration_s": 40,
        "window_s": window_s,
        "policy": {"name": "fixed", "cut_after": "relu1"},  # 8 KB a frame
        "fleet": [
            {
                "name": "cams",
                "count": 6,
                "fps": 10,
                "model": "digits_cnn",
                "device": "rpi4",
                "network": {
                    "traces": ["Verizon-LTE-short", "TMobile-LTE-short", "ATT-LTE-driving"],
                    "rtt_ms": rtt_ms,
                },
            }
        ],
        "cloud": [{"name": "dc", "servers": 64}],
    }


def test_uplink_matches_the_per_frame_event_loop_on_real_traces() -> None:
    plan = compile_scenario(scenario_from_dict(uplink_scenario(3.7)))
    group = plan.groups[0]
    option = group.options[0]
    assert option.wire_bits == 8 * 8192 and option.uses_cloud
    shard = CameraShard(plan, 0, group.count)
    batches = [shard.step(t_end)[0] for _, t_end in plan.windows]
    frames = FrameBatch.concat(batches)
    links = group.link.cameras(plan.seed, 0, np.arange(group.count))
    checked = 0
    for c in range(group.count):
        mine = frames.gid == c
        order = np.argsort(frames.frame[mine])
        sent = frames.arrival_s[mine][order]  # rtt 0: arrival at the site = last bit sent
        # 10 fps and a head shorter than 100 ms: each frame enters its uplink when its
        # head is done, right after capture.
        enter = frames.t_gen_s[mine][order] + option.edge_s
        curve = group.link.curves[links.curve[c]]
        bits = np.full(enter.size, option.wire_bits)
        reference = fluid_link_reference(curve, enter, bits, links.offset_s[c])
        np.testing.assert_allclose(sent, reference, rtol=0, atol=1e-9)
        vectorised = fluid_fifo_departures(curve, enter, bits, links.offset_s[c])
        np.testing.assert_allclose(sent, vectorised, rtol=0, atol=1e-9)
        checked += enter.size
    assert checked == 6 * 400
    # The links were busy: queueing happened on at least one trace.
    assert np.max(frames.arrival_s - frames.t_gen_s) > 1.0


# --------------------------------------------------------------------------- cloud site


def test_merge_orders_by_time_camera_and_frame() -> None:
    def batch(t, g, k):
        n = len(t)
        return FrameBatch(
            np.array(t, float), np.array(g), np.array(k), np.zeros(n, np.int32), np.zeros(n)
        )

    merged = merge_batches(
        [
            batch([1.0, 2.0, 2.0], [5, 1, 5], [0, 0, 1]),
            batch([0.5, 2.0, 2.0, 3.0], [2, 1, 3, 0], [0, 1, 0, 0]),
        ]
    )
    assert list(zip(merged.arrival_s, merged.gid, merged.frame, strict=True)) == [
        (0.5, 2, 0), (1.0, 5, 0), (2.0, 1, 0), (2.0, 1, 1), (2.0, 3, 0), (2.0, 5, 1), (3.0, 0, 0)
    ]  # fmt: skip
