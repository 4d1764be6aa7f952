"""The corpus at full size: capture, price, plan at three bandwidths, split, head->tail == whole.

    python benchmarks/corpus.py [--only hf_vit,hf_bert] [--threads 1]

The same models and checks as tests/partitioner/model/test_corpus.py (imported from it),
with the published configurations: ViT-B/16, Swin-T, BERT-base and GPT-2 small at 128
tokens, whisper-tiny's encoder, the base Transformer's encoder (batch and sequence first),
LSTM/GRU classifiers, torchvision's vit_b_16, swin_t and convnext_tiny. Printed per model:
nodes, GFLOP (and the share of attention, recurrent and GEMM classes), unpriced ops, capture
time, the planned cut at each bandwidth (rpi4 -> LTE -> x86-server), and for every cut tried
(the plans' and those right after an attention, a norm, an activation, a recurrent layer)
the largest relative error of tail(head(x)) at batch 1 and 2, or the failure; and which
cuts cross a tensor whose batch is not in dim 0 (issue 11 part 3).
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
import types
from pathlib import Path

import torch

from partitioner.model.capture import capture
from partitioner.model.ops import unpriced_ops

ROOT = Path(__file__).resolve().parents[1]


def load_corpus() -> types.ModuleType:
    path = ROOT / "tests" / "partitioner" / "model" / "test_corpus.py"
    spec = importlib.util.spec_from_file_location("corpus_models", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["corpus_models"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--only", help="comma list of corpus models (default: every one)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    corpus = load_corpus()
    wanted = set(args.only.split(",")) if args.only else None
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s)")
    worst = 0.0
    for entry in corpus.CORPUS:
        if wanted and entry.name not in wanted:
            continue
        try:
            model, x = entry.build(True)
        except BaseException as exc:  # pytest.skip outside pytest: a missing package
            print(f"\n{entry.name}: not built ({type(exc).__name__}: {exc})")
            continue
        start = time.perf_counter()
        cap = capture(model, x, name=entry.name)
        capture_s = time.perf_counter() - start
        graph = cap.graph
        total = graph.total_flops()
        share = {
            c: sum(n.flops for n in graph.nodes if n.op_class == c) / max(total, 1)
            for c in ("attention", "recurrent", "matmul", "conv")
        }
        shares = ", ".join(f"{c} {v:.0%}" for c, v in share.items() if v)
        print(
            f"\n{entry.name} ({entry.kind}, {entry.source}): {len(graph)} nodes, "
            f"{total / 1e9:.2f} GFLOP ({shares}), unpriced {unpriced_ops(graph) or 'none'}, "
            f"dynamic batch {cap.dynamic_batch}, capture {capture_s:.1f} s"
        )
        plans = corpus.plans(cap)
        cuts: dict[str, frozenset[str]] = {}
        for bw, plan in plans.items():
            n_edge = len(plan.edge_nodes) - len(graph.inputs)
            sent = sum(t.bytes for t in plan.cut)
            print(
                f"  plan @ {bw:g} Mbit/s: {n_edge} of {len(graph) - len(graph.inputs)} ops on the "
                f"edge, {sent / 1e3:.1f} kB crossing, {plan.predicted.total_ms:.1f} ms predicted"
            )
            cuts[f"plan@{bw:g}"] = frozenset(plan.edge_nodes)
        for op in entry.inner_ops:
            found = corpus.inner_cut(cap, op)
            if found is not None:
                cuts[f"after:{op}"] = found
        for label, edge in cuts.items():
            crossing = [n.name for n in graph.crossing(edge)]
            dims = corpus.batch_dims(cap, crossing)
            off = {k: d for k, d in dims.items() if d != 0}
            results = []
            for batch in corpus.BATCHES:
                try:
                    err = corpus.split_error(cap, model, edge, corpus.with_batch(x, batch))
                    worst = max(worst, err)
                    results.append(f"b{batch} {err:.1e}")
                except Exception as exc:
                    results.append(f"b{batch} FAILED ({type(exc).__name__}: {str(exc)[:80]})")
            note = f"; batch not in dim 0: {off}" if off else ""
            print(f"  {label:36s} {len(crossing)} crossing: {', '.join(results)}{note}")
    print(f"\nlargest relative error of a split that ran: {worst:.1e} (bound 1e-4)")


if __name__ == "__main__":
    main()
