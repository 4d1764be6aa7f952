"""Capture records which dim of every tensor holds the batch, and keeps frame-mixing tensors
from crossing a cut."""

from __future__ import annotations

import torch
from torch import nn

from partitioner.deploy.split import split_module
from partitioner.model.capture import capture


class Mixed(nn.Module):
    """(B, T, F) -> an LSTM's h_n (layers, B, H), a batch mean (no batch dim) subtracted."""

    def __init__(self) -> None:
        super().__init__()
        self.rnn = nn.LSTM(4, 6, num_layers=2, batch_first=True)
        self.head = nn.Linear(6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, (h, _) = self.rnn(x)  # h: (2, B, 6)
        centred = h - h.mean(dim=1, keepdim=True)  # mixes the frames of a batch
        return self.head(centred[-1])


def test_batch_dims_of_an_lstm_state_and_a_batch_mean() -> None:
    cap = capture(Mixed().eval(), torch.randn(1, 5, 4))
    graph = cap.graph
    dims = {n.op: n.batch_dim for n in graph.nodes if n.dtype != "tuple"}
    assert dims["input"] == 0
    assert dims["mean"] is None  # (2, 1, 6) whatever the batch
    assert dims["sub"] == 1 and dims["linear"] == 0
    (h,) = [n for n in graph.nodes if n.op == "getitem" and n.shape == (2, 1, 6)]
    assert h.batch_dim == 1  # h_n is (layers, B, H)
    mean = next(n for n in graph.nodes if n.op == "mean")
    assert not graph.constant_mask[graph.index[mean.name]]
    # The mean is tied to its reader: no closed cut puts it on the edge and the sub on the cloud.
    assert all((mean.name, user) in graph.ties for user in mean.users)
    cut = graph.close([mean.name])
    assert all(user in cut for user in mean.users)
    assert all(n.batch_dim is not None for n in graph.crossing(cut))


def test_a_cut_after_the_lstm_state_stacks_frames_in_dim_1() -> None:
    model = Mixed().eval()
    cap = capture(model, torch.randn(1, 5, 4))
    h = next(n for n in cap.graph.nodes if n.op == "getitem" and n.shape == (2, 1, 6))
    halves = split_module(cap, cap.graph.close([h.name]))
    assert [n.batch_dim for n in halves.crossing] == [1]
    x = torch.randn(3, 5, 4)
    with torch.inference_mode():
        (mid,) = halves.head(x)
        assert mid.shape == (2, 3, 6)
        assert halves.tail is not None
        torch.testing.assert_close(halves.tail(mid)[0], model(x), rtol=1e-5, atol=1e-6)
