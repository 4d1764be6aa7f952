"""FLOPs of attention, recurrent layers, GEMMs and norms against analytic counts; unpriced ops.

The analytic formulas are written out here, independently of torch's flop counter and of
partitioner.model.ops: 2 FLOPs per multiply-accumulate, per frame (batch 1).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from partitioner.model.capture import capture
from partitioner.model.ops import OP_CLASSES, unpriced_ops, unpriced_warning
from partitioner.pricing.profiles import DEVICES

REL = 0.05  # the bound: within 5% of the analytic count


def _flops(graph, op_class: str) -> int:
    return sum(n.flops for n in graph.nodes if n.op_class == op_class)


# --- attention -------------------------------------------------------------------------


def attention_flops(seq: int, d_model: int) -> int:
    """Q K^T then (softmax) V, summed over heads: 2 * S * S * d twice."""
    return 2 * seq * seq * d_model + 2 * seq * seq * d_model


class Sdpa(nn.Module):
    """Attention of (B, S, d) with ``heads`` heads by F.scaled_dot_product_attention."""

    def __init__(self, heads: int) -> None:
        super().__init__()
        self.heads = heads

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, s, d = x.shape
        q = x.view(b, s, self.heads, d // self.heads).transpose(1, 2)  # (B, nh, S, hs)
        out = F.scaled_dot_product_attention(q, q, q)
        return out.transpose(1, 2).reshape(b, s, d)


class MatmulSoftmax(Sdpa):
    """The same attention written out: matmul, softmax, matmul (as eager ViT/BERT code does)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, s, d = x.shape
        q = x.view(b, s, self.heads, d // self.heads).transpose(1, 2)  # (B, nh, S, hs)
        scores = torch.matmul(q, q.transpose(-1, -2)) / (d // self.heads) ** 0.5
        out = torch.matmul(scores.softmax(-1), q)
        return out.transpose(1, 2).reshape(b, s, d)


def test_vit_b16_attention_is_counted_not_guessed() -> None:
    # ViT-B/16 at 224x224: 197 tokens of width 768, 12 heads, 12 layers: ~1.43 GFLOP of
    # attention (the issue found 1.8 MFLOP: one FLOP per output element).
    seq, d = 197, 768
    graph = capture(Sdpa(12), torch.randn(1, seq, d)).graph
    (node,) = [n for n in graph.nodes if n.op == "scaled_dot_product_attention"]
    assert node.op_class == "attention"
    assert node.flops == pytest.approx(attention_flops(seq, d), rel=REL)
    assert 12 * node.flops == pytest.approx(1.43e9, rel=REL)


def test_decomposed_attention_is_priced_as_gemms() -> None:
    seq, d = 50, 64
    graph = capture(MatmulSoftmax(4), torch.randn(1, seq, d)).graph
    assert _flops(graph, "matmul") == pytest.approx(attention_flops(seq, d), rel=REL)
    softmax = [n for n in graph.nodes if n.op == "softmax"]
    assert softmax and all(n.op_class == "elementwise" and n.flops > 0 for n in softmax)


def test_transformer_encoder_layer_totals_its_gemms() -> None:
    # Per layer: Q, K, V and output projections 4 * 2*S*d*d, the MLP 2 * 2*S*d*(4d),
    # attention 4*S*S*d; the rest (norms, softmax, GELU, residuals) is a few percent.
    seq, d = 64, 128
    layer = nn.TransformerEncoderLayer(d, 4, dim_feedforward=4 * d, batch_first=True)
    graph = capture(layer.eval(), torch.randn(1, seq, d)).graph
    analytic = 8 * seq * d * d + 16 * seq * d * d + attention_flops(seq, d)
    gemms = _flops(graph, "matmul") + _flops(graph, "attention")
    assert gemms == pytest.approx(analytic, rel=REL)
    assert graph.total_flops() == pytest.approx(analytic, rel=2 * REL)
    assert not unpriced_ops(graph)


# --- recurrent layers --------------------------------------------------------------------


def lstm_flops(seq: int, inputs: int, hidden: int, layers: int) -> int:
    """Four gates per step: W_ih x and W_hh h, 2 FLOPs per weight, every layer."""
    total, width = 0, inputs
    for _ in range(layers):
        total += seq * 2 * 4 * hidden * (width + hidden)
        width = hidden
    return total


def gru_flops(seq: int, inputs: int, hidden: int) -> int:
    return seq * 2 * 3 * hidden * (inputs + hidden)


class Recurrent(nn.Module):
    def __init__(self, rnn: nn.Module) -> None:
        super().__init__()
        self.rnn = rnn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(x)
        return out


def test_lstm_flops_match_the_analytic_count() -> None:
    # The case: 40 features, 128 hidden, 2 layers, 50 steps: ~21.7 MFLOP
    # (counted before as 19,200: one FLOP per output element).
    graph = capture(
        Recurrent(nn.LSTM(40, 128, num_layers=2, batch_first=True)), torch.randn(1, 50, 40)
    ).graph
    (node,) = [n for n in graph.nodes if n.op == "lstm"]
    assert node.op_class == "recurrent"
    assert node.flops == pytest.approx(lstm_flops(50, 40, 128, 2), rel=REL)
    assert node.flops == pytest.approx(21.7e6, rel=REL)


def test_gru_and_sequence_first_lstm() -> None:
    gru = capture(Recurrent(nn.GRU(24, 32, batch_first=True)), torch.randn(1, 30, 24)).graph
    (node,) = [n for n in gru.nodes if n.op == "gru"]
    assert node.op_class == "recurrent"
    assert node.flops == pytest.approx(gru_flops(30, 24, 32), rel=REL)
    # Sequence first (S, B, F), captured at one frame: the same count.
    lstm = capture(Recurrent(nn.LSTM(24, 32)), torch.randn(1, 30, 24), dynamic_batch=False).graph
    (node,) = [n for n in lstm.nodes if n.op == "lstm"]
    assert node.flops == pytest.approx(lstm_flops(30, 24, 32, 1), rel=REL)


# --- GEMMs, norms, embeddings --------------------------------------------------------------


class Misc(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(100, 32)
        self.norm = nn.LayerNorm(32)
        self.group = nn.GroupNorm(4, 16)
        self.w = nn.Parameter(torch.randn(32, 16))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        x = self.norm(self.embed(ids))  # (B, S, 32)
        y = torch.einsum("bsd,de->bse", x, self.w)  # (B, S, 16)
        return self.group(y.transpose(1, 2))


def test_einsum_norms_and_embeddings_have_classes() -> None:
    graph = capture(Misc(), torch.randint(0, 100, (1, 10))).graph
    classes = {n.op: n.op_class for n in graph.nodes}
    assert classes["embedding"] == "embedding"
    assert classes["layer_norm"] == classes["group_norm"] == "norm"
    einsum = [n for n in graph.nodes if n.op == "einsum"]
    assert [n.op_class for n in einsum] == ["matmul"]
    assert einsum[0].flops == 2 * 10 * 32 * 16
    assert not unpriced_ops(graph)


def test_every_class_has_an_efficiency_on_every_preset() -> None:
    priced = set(OP_CLASSES) - {"view", "input", "unpriced"}
    for device in DEVICES.list():
        assert priced <= set(device.efficiency), device.name


# --- an op nobody prices ---------------------------------------------------------------


@torch.library.custom_op("edgecut_test::mystery", mutates_args=())
def mystery(x: torch.Tensor) -> torch.Tensor:
    return x * 2


@mystery.register_fake
def _(x: torch.Tensor) -> torch.Tensor:
    return torch.empty_like(x)


class Mysterious(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ops.edgecut_test.mystery(torch.relu(x))


def test_an_op_without_a_rule_is_listed_not_guessed() -> None:
    graph = capture(Mysterious(), torch.randn(1, 8)).graph
    node = next(n for n in graph.nodes if n.op == "mystery")
    assert node.op_class == "unpriced" and node.flops == 0
    assert unpriced_ops(graph) == ["mystery"]
    warning = unpriced_warning(graph)
    assert warning is not None and "mystery" in warning
    # priced by its bytes alone, never zero: it still runs
    assert DEVICES.get("rpi4").node_ms(node) > 0
