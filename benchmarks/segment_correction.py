"""Segments on this host: a cut's exported halves measured as wholes against their predictions.

    python benchmarks/segment_correction.py [--fit alexnet,mobilenet_v2,squeezenet1_1]
        [--eval resnet18,googlenet] [--cuts 6] [--threads 1] [--min-run-s 1.0]

For every model, at ``--cuts`` cuts spread over its topological order (cloud-only and
edge-only among them; the others where one tensor crosses), the cut's head and tail are
exported, loaded back as the nodes load them and timed as whole modules
(``Planner.measure_halves``); the prediction is the sum of the host's per-node medians
over each half (``CostModel.predict`` with an uncorrected host profile), measured just
before the halves so that both see the same load on a shared machine. The
SegmentCorrection is fitted on the ``--fit`` models, both ways (factor and per-segment
overhead, or the overhead alone with the factor 1), and judged on the ``--eval`` models it
never saw: each half's prediction before correction, under each fit and under the
correction the ``host`` preset ships, against the measurement. Last, both fits on every
model: the ``host`` preset (partitioner/pricing/profiles.py) stores the one that did better
on the held-out halves that compute.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics

import numpy as np
import torch

from partitioner.planner import Planner
from partitioner.pricing.calibration import SegmentSample, fit_segment_correction
from partitioner.pricing.cost import CostModel
from partitioner.pricing.host import measure_host
from partitioner.pricing.profiles import DEVICES, DeviceProfile, SegmentCorrection
from partitioner.solve.plan import evaluate_cut

SHAPE = (1, 3, 224, 224)


def cut_points(planner: Planner, count: int) -> list[str]:
    """``count`` cut nodes: the input (cloud-only), the last node (edge-only) and, between
    them, nodes evenly spread over the order whose cut sends a single tensor."""
    graph = planner.graph
    names = [n.name for n in graph.nodes]
    single = [n for n in names[1:-1] if len(graph.crossing(graph.close([n]))) == 1]
    inner = [single[round(i)] for i in np.linspace(0, len(single) - 1, count)[1:-1]]
    return [names[0], *inner, names[-1]]


def measure_model(model: str, args: argparse.Namespace) -> list[SegmentSample]:
    planner = Planner.create(model, edge="x86-server", cloud="x86-server", input_shape=SHAPE)
    samples = []
    for cut in cut_points(planner, args.cuts):
        node_ms = measure_host(planner.captured, threads=args.threads, min_run_time_s=0.05).node_ms
        raw = raw_host(node_ms)
        cost = CostModel(planner.graph, raw, raw, planner.cost.network)
        plan = evaluate_cut(cost, cut)
        predicted = cost.predict(plan.edge_nodes)
        head, tail = planner.measure_halves(
            plan, threads=args.threads, min_run_time_s=args.min_run_s
        )
        samples.append(SegmentSample(model, "head", cut, predicted.edge_ms, head.median_ms))
        if tail is not None:
            samples.append(SegmentSample(model, "tail", cut, predicted.cloud_ms, tail.median_ms))
        print(
            f"  {model} after {cut}: head {predicted.edge_ms:.2f} predicted, "
            f"{head.median_ms:.2f} measured; tail {predicted.cloud_ms:.2f} predicted, "
            f"{tail.median_ms if tail else 0.0:.2f} measured",
            flush=True,
        )
    return samples


def raw_host(node_ms: dict[str, float]) -> DeviceProfile:
    """The host answering with ``node_ms`` and no segment correction: the plain sum."""
    host = dataclasses.replace(DEVICES.get("host"), segment=SegmentCorrection())
    return host.with_measurements(node_ms)


def error_pct(predicted: float, measured: float) -> float:
    return (predicted / measured - 1) * 100


def report(samples: list[SegmentSample], corrections: dict[str, SegmentCorrection]) -> None:
    """Each half's prediction before correction and under each correction, against its
    measurement; then the mean |error| over all halves and over those that compute (an
    identity head's node sum is 0, so before correction it is always -100%)."""
    columns = {"before": SegmentCorrection(), **corrections}
    header = f"{'model':<14}{'cut after':<24}{'half':<6}{'measured':>9}"
    print(header + "".join(f"{k[:8]:>9}{'err':>8}" for k in columns))
    errors: dict[str, list[tuple[bool, float]]] = {k: [] for k in columns}
    for s in samples:
        line = f"{s.model[:13]:<14}{s.cut[:23]:<24}{s.side:<6}{s.measured_ms:>9.2f}"
        for key, correction in columns.items():
            value = correction.segment_ms(s.nodes_ms)
            err = error_pct(value, s.measured_ms)
            errors[key].append((s.nodes_ms > 0, abs(err)))
            line += f"{value:>9.2f}{err:>+7.1f}%"
        print(line)
    for label, computing_only in (("all halves", False), ("halves that compute", True)):
        means = []
        for key, rows in errors.items():
            picked = [e for computes, e in rows if computes or not computing_only]
            means.append(f"{key} {statistics.mean(picked):.1f}% (max {max(picked):.1f}%)")
        print(f"mean |error|, {label}: " + ", ".join(means))


def fits(samples: list[SegmentSample]) -> dict[str, SegmentCorrection]:
    return {
        "factor+overhead": fit_segment_correction(samples),
        "overhead": fit_segment_correction(samples, fit_factor=False),
    }


def describe(corrections: dict[str, SegmentCorrection]) -> str:
    return "; ".join(
        f"{k}: factor {c.factor:.4f}, overhead {c.overhead_ms:.3f} ms"
        for k, c in corrections.items()
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fit", default="alexnet,mobilenet_v2,squeezenet1_1")
    parser.add_argument("--eval", default="resnet18,googlenet")
    parser.add_argument("--cuts", type=int, default=6)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--min-run-s", type=float, default=1.0)
    args = parser.parse_args()
    fit_models, eval_models = args.fit.split(","), args.eval.split(",")
    print(
        f"torch {torch.__version__}, {args.threads} thread(s), {'x'.join(map(str, SHAPE))}, "
        f"{args.cuts} cuts per model"
    )
    by_model = {m: measure_model(m, args) for m in [*fit_models, *eval_models]}
    fit_samples = [s for m in fit_models for s in by_model[m]]
    held_out = [s for m in eval_models for s in by_model[m]]
    fitted = fits(fit_samples)
    print(f"\nfitted on {', '.join(fit_models)}: {describe(fitted)}")
    print(f"judged on {', '.join(eval_models)} (never fitted); shipped: the host preset's")
    report(held_out, {**fitted, "shipped": DEVICES.get("host").segment})
    everything = fits([*fit_samples, *held_out])
    print(f"\nfitted on all {len(by_model)} models: {describe(everything)}")
    report([*fit_samples, *held_out], everything)


if __name__ == "__main__":
    main()
