"""Networks edgecut did not write: captured, priced, planned and split, head->tail == whole.

The corpus is third-party architecture: Hugging Face ``transformers`` models built
from configs with random weights (ViT, Swin, BERT, GPT-2, Whisper's encoder),
``torch.nn.TransformerEncoder`` (batch first and sequence first), LSTM and GRU
models, and torchvision's pure-Python model definitions (ViT, Swin, ConvNeXt).
Each :class:`CorpusModel` builds a ``small`` configuration (here, in seconds) or
the ``full`` published one (``benchmarks/corpus.py``, which imports this file).

For every model: capture with no unpriced op, a plan at three bandwidths, and a
split at each plan's cut and at cuts inside blocks (right after an attention, a
norm, an MLP activation, a recurrent layer) whose head then tail equals the whole
model within 1e-4 (relative to the output's largest value), at batch 1 and 2.
A crossing tensor carries the batch in the dim capture recorded for it (``Node.batch_dim``):
a sequence-first encoder's (S, B, E) in dim 1, Swin's windows (3, B*nW, ...) folded into
dim 1; a constant such as GPT-2's position ids has none and never crosses.
"""

from __future__ import annotations

import functools
import importlib.machinery
import importlib.util
import math
import sys
import types
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
import torch
from torch import nn

from partitioner.deploy.split import split_module
from partitioner.model.capture import CapturedModel, capture
from partitioner.model.ops import unpriced_ops
from partitioner.pricing.cost import CostModel
from partitioner.pricing.network import resolve_network
from partitioner.pricing.profiles import DEVICES
from partitioner.solve.plan import Plan, make_plan

REL_TOL = 1e-4
BANDWIDTHS_MBPS = (1.0, 10.0, 100.0)
BATCHES = (1, 2)


# --- third-party packages ------------------------------------------------------------------


def torchvision_models() -> types.ModuleType:
    """``torchvision.models``, without loading torchvision's compiled ops.

    The torchvision wheel that installs here is a CUDA build: ``import torchvision``
    fails in its ``__init__`` (registering fake kernels for ``torchvision::nms``, whose
    library needs ``libc10_cuda.so``). The model definitions are pure Python, so when
    that import fails the package is entered as a bare namespace that skips
    ``__init__``, and only ``torchvision.models`` is imported from it. Both steps must
    come before ``transformers`` is imported: it imports torchvision whenever the
    distribution is installed.
    """
    try:
        import torchvision.models as models

        return models
    except ImportError:
        pytest.skip("torchvision is not installed (pip install --no-deps torchvision)")
    except RuntimeError:  # the compiled ops of a CUDA build do not load on this machine
        spec = importlib.util.find_spec("torchvision")
        assert spec is not None and spec.submodule_search_locations is not None
        package = types.ModuleType("torchvision")
        package.__path__ = list(spec.submodule_search_locations)
        package.__spec__ = importlib.machinery.ModuleSpec("torchvision", None, is_package=True)
        package.__spec__.submodule_search_locations = package.__path__
        sys.modules["torchvision"] = package
        import torchvision.models as models

        return models


def hf() -> types.ModuleType:
    """The ``transformers`` package (after torchvision is importable: see above)."""
    if importlib.util.find_spec("torchvision") is not None:
        torchvision_models()
    return pytest.importorskip("transformers")


# --- the corpus ----------------------------------------------------------------------------


class LastHidden(nn.Module):
    """A Hugging Face model returning its last hidden state as one tensor."""

    def __init__(self, model: nn.Module, **call: Any) -> None:
        super().__init__()
        self.model = model
        self.call = call

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x, **self.call).last_hidden_state


class SequenceFirst(nn.Module):
    """A sequence-first encoder fed batch-first frames: its inner tensors are (S, B, E)."""

    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (B, S, E)
        return self.encoder(x.transpose(0, 1)).transpose(0, 1)


class Classifier(nn.Module):
    """A recurrent layer over (B, T, F) and a linear head on its last step."""

    def __init__(self, rnn: nn.Module, hidden: int, classes: int) -> None:
        super().__init__()
        self.rnn = rnn
        self.head = nn.Linear(hidden, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(x)  # (B, T, H)
        return self.head(out[:, -1])


Built = tuple[nn.Module, torch.Tensor]  # the model in eval mode, an example input at batch 1


@dataclass(frozen=True)
class CorpusModel:
    name: str
    kind: str  # "transformer" | "recurrent" | "convolutional": what the cost model has seen
    source: str  # the package that defines the architecture
    build: Callable[[bool], Built]  # full size? -> (model, example input at batch 1)
    inner_ops: tuple[str, ...]  # ops right after whose first call a cut is tried


def _seeded(build: Callable[[bool], Built]) -> Callable[[bool], Built]:
    @functools.wraps(build)
    def seeded(full: bool) -> Built:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            model, x = build(full)
        return model.eval(), x

    return seeded


def _pixels(size: int) -> torch.Tensor:
    return torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(1))


def _tokens(vocab: int, length: int) -> torch.Tensor:
    return torch.randint(0, vocab, (1, length), generator=torch.Generator().manual_seed(1))


def _sequence(steps: int, features: int) -> torch.Tensor:
    return torch.randn(1, steps, features, generator=torch.Generator().manual_seed(1))


@_seeded
def hf_vit(full: bool) -> Built:
    T = hf()
    if full:  # ViT-B/16 at 224x224
        config = T.ViTConfig()
    else:
        config = T.ViTConfig(
            hidden_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            intermediate_size=128,
            image_size=32,
            patch_size=8,
        )
    model = T.ViTModel(config, add_pooling_layer=False)
    return LastHidden(model), _pixels(config.image_size)


@_seeded
def hf_swin(full: bool) -> Built:
    T = hf()
    if full:  # Swin-T at 224x224
        config = T.SwinConfig()
    else:
        config = T.SwinConfig(
            image_size=32,
            patch_size=4,
            embed_dim=16,
            depths=[2, 2],
            num_heads=[2, 4],
            window_size=4,
        )
    return LastHidden(T.SwinModel(config, add_pooling_layer=False)), _pixels(config.image_size)


@_seeded
def hf_bert(full: bool) -> Built:
    T = hf()
    if full:  # BERT-base, 128 tokens
        config, length = T.BertConfig(), 128
    else:
        config, length = (
            T.BertConfig(
                vocab_size=100,
                hidden_size=64,
                num_hidden_layers=2,
                num_attention_heads=4,
                intermediate_size=128,
                max_position_embeddings=64,
            ),
            16,
        )
    model = T.BertModel(config, add_pooling_layer=False)
    return LastHidden(model), _tokens(config.vocab_size, length)


@_seeded
def hf_gpt2(full: bool) -> Built:
    T = hf()
    if full:  # GPT-2 small (124M), 128 tokens
        config, length = T.GPT2Config(use_cache=False), 128
    else:
        config, length = (
            T.GPT2Config(vocab_size=100, n_embd=64, n_layer=2, n_head=4, n_positions=64),
            16,
        )
    # The key/value cache is a DynamicCache object torch.export cannot return: ask for none.
    return LastHidden(T.GPT2Model(config), use_cache=False), _tokens(config.vocab_size, length)


@_seeded
def hf_whisper_encoder(full: bool) -> Built:
    T = hf()
    if full:  # whisper-tiny's encoder: 80 mel bins x 3000 frames (30 s)
        config = T.WhisperConfig()
    else:
        config = T.WhisperConfig(
            num_mel_bins=16,
            d_model=32,
            encoder_layers=2,
            encoder_attention_heads=2,
            encoder_ffn_dim=64,
            decoder_layers=1,
            decoder_attention_heads=2,
            decoder_ffn_dim=64,
            max_source_positions=25,
        )
    encoder = T.WhisperForConditionalGeneration(config).get_encoder()
    frames = 2 * config.max_source_positions  # the conv stem halves the frames
    x = torch.randn(1, config.num_mel_bins, frames, generator=torch.Generator().manual_seed(1))
    return LastHidden(encoder), x


def _torch_encoder(full: bool, batch_first: bool) -> nn.TransformerEncoder:
    # Full size: the base Transformer's encoder (Vaswani et al.): 6 layers, 512 wide, 8 heads.
    width, heads, layers = (512, 8, 6) if full else (32, 4, 2)
    layer = nn.TransformerEncoderLayer(
        width, heads, dim_feedforward=4 * width, batch_first=batch_first
    )
    return nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)


@_seeded
def torch_encoder_batch_first(full: bool) -> Built:
    return _torch_encoder(full, True), _sequence(128 if full else 16, 512 if full else 32)


@_seeded
def torch_encoder_sequence_first(full: bool) -> Built:
    encoder = SequenceFirst(_torch_encoder(full, False))
    return encoder, _sequence(128 if full else 16, 512 if full else 32)


@_seeded
def lstm_classifier(full: bool) -> Built:
    # Full size: a speech-command-sized model, 80 features x 100 steps, 3 x 256 LSTM.
    features, hidden, layers, steps = (80, 256, 3, 100) if full else (8, 16, 2, 12)
    rnn = nn.LSTM(features, hidden, num_layers=layers, batch_first=True)
    return Classifier(rnn, hidden, 10), _sequence(steps, features)


@_seeded
def gru_classifier(full: bool) -> Built:
    features, hidden, layers, steps = (80, 256, 2, 100) if full else (8, 16, 2, 12)
    rnn = nn.GRU(features, hidden, num_layers=layers, batch_first=True)
    return Classifier(rnn, hidden, 10), _sequence(steps, features)


@_seeded
def tv_vit(full: bool) -> Built:
    models = torchvision_models()
    if full:
        return models.vit_b_16(), _pixels(224)
    model = models.VisionTransformer(
        image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=32, mlp_dim=64
    )
    return model, _pixels(32)


@_seeded
def tv_swin(full: bool) -> Built:
    models = torchvision_models()
    if full:
        return models.swin_t(), _pixels(224)
    model = models.SwinTransformer(
        patch_size=[4, 4], embed_dim=16, depths=[2, 2], num_heads=[2, 4], window_size=[4, 4]
    )
    return model, _pixels(32)


@_seeded
def tv_convnext(full: bool) -> Built:
    models = torchvision_models()
    if full:
        return models.convnext_tiny(), _pixels(224)
    from torchvision.models.convnext import CNBlockConfig

    settings = [CNBlockConfig(16, 32, 1), CNBlockConfig(32, None, 1)]
    return models.ConvNeXt(settings, num_classes=10), _pixels(32)


_ATTENTION = ("scaled_dot_product_attention", "layer_norm", "gelu")
CORPUS: tuple[CorpusModel, ...] = (
    CorpusModel("hf_vit", "transformer", "transformers", hf_vit, _ATTENTION),
    CorpusModel("hf_swin", "transformer", "transformers", hf_swin, (*_ATTENTION, "roll")),
    CorpusModel("hf_bert", "transformer", "transformers", hf_bert, ("embedding", *_ATTENTION)),
    # GPT-2's GELU is its own tanh formula ("gelu_new"), not torch's gelu.
    CorpusModel(
        "hf_gpt2",
        "transformer",
        "transformers",
        hf_gpt2,
        ("embedding", "scaled_dot_product_attention", "layer_norm", "tanh"),
    ),
    CorpusModel(
        "hf_whisper_encoder", "transformer", "transformers", hf_whisper_encoder, _ATTENTION
    ),
    CorpusModel(
        "torch_encoder_batch_first",
        "transformer",
        "torch",
        torch_encoder_batch_first,
        ("scaled_dot_product_attention", "layer_norm", "relu"),
    ),
    CorpusModel(
        "torch_encoder_sequence_first",
        "transformer",
        "torch",
        torch_encoder_sequence_first,
        ("scaled_dot_product_attention", "layer_norm", "relu"),
    ),
    CorpusModel("lstm_classifier", "recurrent", "torch", lstm_classifier, ("lstm",)),
    CorpusModel("gru_classifier", "recurrent", "torch", gru_classifier, ("gru",)),
    CorpusModel("tv_vit", "transformer", "torchvision", tv_vit, _ATTENTION),
    CorpusModel(
        "tv_swin", "transformer", "torchvision", tv_swin, ("softmax", "layer_norm", "roll")
    ),
    CorpusModel("tv_convnext", "convolutional", "torchvision", tv_convnext, ("layer_norm", "gelu")),
)
BY_NAME = {m.name: m for m in CORPUS}


# --- what every model goes through ---------------------------------------------------------


@functools.cache
def captured(name: str, full: bool = False) -> tuple[nn.Module, torch.Tensor, CapturedModel]:
    model, x = BY_NAME[name].build(full)
    return model, x, capture(model, x, name=name)


def cost_model(graph: Any) -> CostModel:
    return CostModel(graph, DEVICES.get("rpi4"), DEVICES.get("x86-server"), resolve_network("lte"))


def plans(cap: CapturedModel) -> dict[float, Plan]:
    cost = cost_model(cap.graph)
    return {bw: make_plan(cost, bandwidth_mbps=bw) for bw in BANDWIDTHS_MBPS}


def inner_cut(cap: CapturedModel, op: str) -> frozenset[str] | None:
    """The cut right after the first node running ``op`` (inside the first block)."""
    node = next((n for n in cap.graph.nodes if n.op == op), None)
    return None if node is None else cap.graph.close([node.name])


def batch_dims(cap: CapturedModel, names: list[str]) -> dict[str, int | None]:
    """For each tensor, the dim whose size grows with the batch (None: no such dim), read
    here from the symbolic shapes independently of capture's ``Node.batch_dim``.

    Most carry the batch in dim 0, alone or folded with windows (Swin's (B*nW, ...));
    a sequence-first encoder's (S, B, E) in dim 1; a constant such as position ids in
    none.
    """
    batch = set()
    for node in cap.module.graph.nodes:
        val = node.meta.get("val")
        is_input = node.op == "placeholder" and isinstance(val, torch.Tensor) and val.dim() > 0
        if is_input and isinstance(val.shape[0], torch.SymInt):
            batch |= val.shape[0].node.expr.free_symbols
    dims: dict[str, int | None] = {}
    for name in names:
        val = cap.fx_node(name).meta.get("val")
        if isinstance(val, torch.Tensor):
            grows = [
                i
                for i, d in enumerate(val.shape)
                if isinstance(d, torch.SymInt) and d.node.expr.free_symbols & batch
            ]
            dims[name] = grows[0] if grows else None
    return dims


def with_batch(x: torch.Tensor, batch: int) -> torch.Tensor:
    return torch.cat([x] + [x.roll(i, dims=-1) for i in range(1, batch)])


def max_rel_err(got: tuple[torch.Tensor, ...], want: tuple[torch.Tensor, ...]) -> float:
    assert len(got) == len(want)
    err = 0.0
    for a, b in zip(got, want, strict=True):
        assert a.shape == b.shape, (a.shape, b.shape)
        err = max(err, float((a - b).abs().max() / b.abs().max().clamp_min(1e-12)))
    return err


def split_error(
    cap: CapturedModel, model: nn.Module, edge: frozenset[str], x: torch.Tensor
) -> float:
    """Relative error of tail(head(x)) against the whole model, checking crossing shapes."""
    halves = split_module(cap, edge)
    with torch.inference_mode():
        out = model(x)
        want = tuple(out) if isinstance(out, (tuple, list)) else (out,)
        mid = tuple(halves.head(x))
        if halves.tail is None:
            return max_rel_err(mid, want)
        alone = (
            [tuple(halves.head(x[i : i + 1])) for i in range(x.shape[0])] if x.shape[0] > 1 else []
        )
        for j, (t, node) in enumerate(zip(mid, halves.crossing, strict=True)):
            # A crossing tensor is the frame's shape grown by the batch in its batch dim.
            assert node.batch_dim is not None, f"{node.name} crosses without a batch dim"
            expected = list(node.shape)
            expected[node.batch_dim] *= x.shape[0]
            assert tuple(t.shape) == tuple(expected), f"{node.name}: {tuple(t.shape)}"
            # Frames stack along it: the batch is frame 0's tensor, then frame 1's, ...
            for i, frames in enumerate(alone):
                part = t.narrow(
                    node.batch_dim, i * node.shape[node.batch_dim], node.shape[node.batch_dim]
                )
                assert max_rel_err((part,), (frames[j],)) <= REL_TOL, f"{node.name} frame {i}"
        return max_rel_err(tuple(halves.tail(*mid)), want)


def cut_cases() -> list[Any]:
    cases = []
    for m in CORPUS:
        cuts = [f"plan@{bw:g}" for bw in BANDWIDTHS_MBPS] + [f"after:{op}" for op in m.inner_ops]
        for cut in cuts:
            for batch in BATCHES:
                cases.append(pytest.param(m.name, cut, batch, id=f"{m.name}-{cut}-b{batch}"))
    return cases


# --- tests -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", [m.name for m in CORPUS])
def test_captures_and_prices_every_op(name: str) -> None:
    _, _, cap = captured(name)
    graph = cap.graph
    assert cap.dynamic_batch  # the halves accept any batch
    assert not unpriced_ops(graph), unpriced_ops(graph)
    by_class: dict[str, int] = {}
    for node in graph.nodes:
        by_class[node.op_class] = by_class.get(node.op_class, 0) + node.flops
    kind = BY_NAME[name].kind
    if kind == "recurrent":
        assert by_class.get("recurrent", 0) > by_class.get("matmul", 0)
    if kind == "transformer":  # attention is counted: fused, or as batched GEMMs
        assert by_class.get("attention", 0) + by_class.get("matmul", 0) > 0.5 * graph.total_flops()
    assert all(n.flops >= 0 for n in graph.nodes)


@pytest.mark.parametrize("name", [m.name for m in CORPUS])
def test_plans_at_three_bandwidths(name: str) -> None:
    _, _, cap = captured(name)
    made = plans(cap)
    totals = [made[bw].predicted.total_ms for bw in BANDWIDTHS_MBPS]
    assert all(math.isfinite(t) and t > 0 for t in totals)
    assert totals == sorted(totals, reverse=True)  # more bandwidth never costs more
    for plan in made.values():
        assert plan.unpriced_ops == () and plan.to_json()["unpriced_ops"] == []
        assert cap.graph.is_closed(plan.edge_nodes)


@pytest.mark.parametrize("name", [m.name for m in CORPUS])
def test_every_tensor_knows_its_batch_dim(name: str) -> None:
    _, _, cap = captured(name)
    graph = cap.graph
    tensors = [n for n in graph.nodes if n.dtype != "tuple"]
    assert batch_dims(cap, [n.name for n in tensors]) == {n.name: n.batch_dim for n in tensors}
    for node, constant in zip(graph.nodes, graph.constant_mask, strict=True):
        if node.batch_dim is None and not constant and node.dtype != "tuple":
            # A tensor that mixes frames is tied to its readers: no cut makes it cross.
            assert all((node.name, user) in graph.ties for user in node.users), node.name


def test_a_constant_never_crosses_and_the_tail_computes_it() -> None:
    """GPT-2's position ids (arange(S)[None]) have no batch dim: read on both sides of a cut
    inside the first block, they are computed again by the tail instead of crossing."""
    model, x, cap = captured("hf_gpt2")
    ids = next(n for n in cap.graph.nodes if n.op == "unsqueeze" and n.batch_dim is None)
    assert cap.graph.constant_mask[cap.graph.index[ids.name]]
    edge = inner_cut(cap, "layer_norm")
    assert edge is not None and ids.name in edge
    assert any(u not in edge for u in ids.users)  # read on the cloud too
    crossing = [n.name for n in cap.graph.crossing(edge)]
    assert ids.name not in crossing and crossing
    assert split_error(cap, model, edge, with_batch(x, 2)) <= REL_TOL


@pytest.mark.parametrize(("name", "cut", "batch"), cut_cases())
def test_head_then_tail_is_the_whole_model(name: str, cut: str, batch: int) -> None:
    model, x, cap = captured(name)
    if cut.startswith("plan@"):
        edge = frozenset(plans(cap)[float(cut.removeprefix("plan@"))].edge_nodes)
    else:
        found = inner_cut(cap, cut.removeprefix("after:"))
        assert found is not None, f"{name} runs no {cut.removeprefix('after:')}"
        edge = found
    err = split_error(cap, model, edge, with_batch(x, batch))
    assert err <= REL_TOL, f"{name} {cut} batch {batch}: rel err {err:.2e}"
