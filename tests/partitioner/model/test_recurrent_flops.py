"""FLOPs of LSTM and GRU layers against analytic counts: stacked, bidirectional, both layouts.

Written out here independently of partitioner.model.ops: each time step of each direction
of each layer multiplies the layer's input (I wide: the features, or D * H for a layer over
a D-directional layer) and the hidden state (H) by G * H gate rows, 2 FLOPs per
multiply-accumulate; an LSTM has G = 4 gates, a GRU G = 3, a plain RNN G = 1.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from partitioner.model.capture import capture

REL = 0.05  # the bound: within 5% of the analytic count
GATES = {"lstm": 4, "gru": 3, "rnn_tanh": 1}


def analytic_flops(
    kind: str, steps: int, inputs: int, hidden: int, layers: int = 1, directions: int = 1
) -> int:
    total, width = 0, inputs
    for _ in range(layers):
        total += directions * steps * 2 * GATES[kind] * hidden * (width + hidden)
        width = directions * hidden
    return total


class LastOutput(nn.Module):
    def __init__(self, rnn: nn.Module) -> None:
        super().__init__()
        self.rnn = rnn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.rnn(x)[0]


def recurrent_flops(rnn: nn.Module, x: torch.Tensor, kind: str, **kwargs: bool) -> int:
    graph = capture(LastOutput(rnn), x, **kwargs).graph
    (node,) = [n for n in graph.nodes if n.op == kind]
    assert node.op_class == "recurrent"
    return node.flops


@pytest.mark.parametrize("kind", ["lstm", "gru"])
@pytest.mark.parametrize(("layers", "bidirectional"), [(2, False), (3, False), (2, True)])
def test_stacked_and_bidirectional_layers_match_the_analytic_count(
    kind: str, layers: int, bidirectional: bool
) -> None:
    # Wide enough that the bias adds and the cells' elementwise work, which the analytic
    # count leaves out, are a few % (at 24 hidden they were 6%).
    steps, features, hidden = 20, 32, 64
    cls = nn.LSTM if kind == "lstm" else nn.GRU
    rnn = cls(features, hidden, num_layers=layers, batch_first=True, bidirectional=bidirectional)
    counted = recurrent_flops(rnn, torch.randn(1, steps, features), kind)
    directions = 2 if bidirectional else 1
    assert counted == pytest.approx(
        analytic_flops(kind, steps, features, hidden, layers, directions), rel=REL
    )


def test_a_gru_counts_three_gates_where_an_lstm_counts_four() -> None:
    # Same sizes, so the GEMM work differs only by the gate count: 3/4. The corpus's
    # full-size widths (80 features, 256 hidden, 2 layers), over fewer steps.
    x = torch.randn(1, 10, 80)
    lstm = recurrent_flops(nn.LSTM(80, 256, num_layers=2, batch_first=True), x, "lstm")
    gru = recurrent_flops(nn.GRU(80, 256, num_layers=2, batch_first=True), x, "gru")
    assert gru / lstm == pytest.approx(3 / 4, rel=0.01)
    assert gru == pytest.approx(analytic_flops("gru", 10, 80, 256, 2), rel=0.01)


def test_sequence_first_gru_and_a_plain_rnn() -> None:
    # (S, B, F) captured at one frame counts the same steps as batch first.
    gru = recurrent_flops(nn.GRU(32, 64), torch.randn(25, 1, 32), "gru", dynamic_batch=False)
    assert gru == pytest.approx(analytic_flops("gru", 25, 32, 64), rel=REL)
    rnn = nn.RNN(32, 64, num_layers=2, batch_first=True)
    counted = recurrent_flops(rnn, torch.randn(1, 25, 32), "rnn_tanh")
    assert counted == pytest.approx(analytic_flops("rnn_tanh", 25, 32, 64, 2), rel=REL)


def recurrent_node(rnn: nn.Module, x: torch.Tensor, kind: str):  # type: ignore[no-untyped-def]
    graph = capture(LastOutput(rnn), x).graph
    (node,) = [n for n in graph.nodes if n.op == kind]
    return node


@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn_tanh"])
@pytest.mark.parametrize(("layers", "bidirectional"), [(1, False), (3, False), (2, True)])
def test_the_loop_is_every_step_of_every_layer_and_direction(
    kind: str, layers: int, bidirectional: bool
) -> None:
    # Written out: a step multiplies the hidden state (H) by the G * H rows of W_hh, adds
    # b_hh and runs the cell's elementwise ops; it re-reads W_hh (G * H * H floats).
    steps, features, hidden = 15, 24, 40
    cls = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn_tanh": nn.RNN}[kind]
    rnn = cls(features, hidden, num_layers=layers, bidirectional=bidirectional)
    node = recurrent_node(rnn, torch.randn(steps, 1, features), kind)
    directions = 2 if bidirectional else 1
    gates = GATES[kind]
    cell = {"lstm": 9, "gru": 8, "rnn_tanh": 1}[kind] * hidden
    assert node.loop is not None and node.loop.kind == kind
    assert node.loop.steps == steps * layers * directions
    assert node.loop.step_flops == 2 * gates * hidden * hidden + gates * hidden + cell
    assert node.loop.step_bytes == 4 * gates * hidden * hidden
    # What is not in the steps is the input projections: W_ih times every step at once.
    projection = node.flops - node.loop.steps * node.loop.step_flops
    widths = [features] + [directions * hidden] * (layers - 1)
    expected = sum(directions * steps * (2 * gates * hidden * w + gates * hidden) for w in widths)
    assert projection == expected


def test_a_projected_lstm_steps_through_its_projection_too() -> None:
    # proj_size: the hidden state is H_r wide, W_hh is (4H, H_r), and each step also runs
    # W_hr (H_r, H): both wait on the previous step.
    hidden, proj = 32, 8
    node = recurrent_node(nn.LSTM(16, hidden, proj_size=proj), torch.randn(10, 1, 16), "lstm")
    assert node.loop is not None
    assert node.loop.step_bytes == 4 * (4 * hidden * proj + proj * hidden)


def test_only_recurrent_ops_have_a_loop() -> None:
    model = nn.Sequential(nn.Linear(8, 8), nn.ReLU())
    graph = capture(model, torch.randn(1, 8)).graph
    assert all(n.loop is None for n in graph.nodes)
