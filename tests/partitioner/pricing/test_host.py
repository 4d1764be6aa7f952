"""Host measurement: a fixed thread count (restored), the Timer's spread, the CLI's fields."""

from __future__ import annotations

import json

import pytest
import torch

from edgecut.cli import main
from partitioner.pricing.host import (
    HOST_THREADS,
    Timing,
    measure_host,
    measure_loop_rates,
    time_forward,
    torch_threads,
)


def test_timing_quartiles_of_known_samples() -> None:
    t = Timing.of([4.0, 1.0, 3.0, 2.0, 5.0])
    assert (t.min_ms, t.q1_ms, t.median_ms, t.q3_ms, t.max_ms) == (1.0, 2.0, 3.0, 4.0, 5.0)
    assert t.iqr_ms == 2.0 and t.samples == 5
    with pytest.raises(ValueError):
        Timing.of([])


def test_torch_threads_is_restored_even_after_an_error() -> None:
    before = torch.get_num_threads()
    with pytest.raises(RuntimeError), torch_threads(before + 1):
        assert torch.get_num_threads() == before + 1
        raise RuntimeError("inside")
    assert torch.get_num_threads() == before


def test_time_forward_runs_at_the_given_thread_count() -> None:
    before = torch.get_num_threads()
    seen: list[int] = []
    timing = time_forward(lambda: seen.append(torch.get_num_threads()), threads=2, warmup=1,
                          min_run_time_s=0.01)  # fmt: skip
    assert set(seen) == {2} and torch.get_num_threads() == before
    assert timing.min_ms <= timing.q1_ms <= timing.median_ms <= timing.q3_ms <= timing.max_ms


def test_measure_host_defaults_to_host_threads(captured_zoo) -> None:
    _, cap = captured_zoo("digits_cnn")
    before = torch.get_num_threads()
    m = measure_host(cap, repeats=3, warmup=1, min_run_time_s=0.02)
    assert m.threads == HOST_THREADS and torch.get_num_threads() == before
    assert m.total_ms == m.total.median_ms > 0
    assert m.layer_sums.samples >= 3
    assert set(m.node_ms) == set(cap.graph.index)


def test_profile_json_reports_threads_and_spread(capsys) -> None:
    argv = ["profile", "--model", "digits_cnn", "--device", "host", "--repeats", "2"]
    assert main([*argv, "--threads", "2", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["threads"] == 2
    for key in ("total_spread", "sum_of_layers_spread"):
        spread = data[key]
        assert spread["min_ms"] <= spread["median_ms"] <= spread["max_ms"]
        assert spread["iqr_ms"] == pytest.approx(spread["q3_ms"] - spread["q1_ms"])
    assert data["total_ms"] == data["total_spread"]["median_ms"]
    assert data["sum_of_layers_spread"]["samples"] >= 2


def test_plan_accepts_threads_for_a_measured_edge(capsys) -> None:
    argv = ["plan", "--model", "digits_cnn", "--edge", "host", "--bandwidth-mbps", "10"]
    assert main([*argv, "--threads", "1", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["predicted"]["edge_ms"] >= 0


def test_loop_rates_are_measured_for_every_recurrent_kind() -> None:
    import math

    from partitioner.model.ops import op_class_of

    before = torch.get_num_threads()
    rates = measure_loop_rates(threads=1, steps=50, min_run_time_s=0.01)
    assert torch.get_num_threads() == before
    # Every recurrent op the capture can meet has a rate, and only those.
    assert set(rates) == {"lstm", "gru", "rnn_tanh", "rnn_relu"}
    assert all(op_class_of(kind) == "recurrent" for kind in rates)
    for rate in rates.values():
        # A step costs something, and no cache streams faster than 10 TB/s.
        assert 0 < rate.step_us < 10_000
        assert 0 < rate.gbps < 10_000 and math.isfinite(rate.gbps)
