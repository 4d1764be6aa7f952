"""``edgecut profile``: per-layer latency of a model on one device."""

from __future__ import annotations

import argparse
from typing import Any

from edgecut.args import add_host_threads_arg, add_model_args, int_in_range

MAX_REPEATS = 10_000  # a host measurement of this many runs per node is already minutes


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("profile", help="per-layer latency of a model on a device")
    add_model_args(p)
    p.add_argument("--device", required=True, help="device preset, or host to measure here")
    p.add_argument("--dtype", help="compute dtype (device default)")
    p.add_argument(
        "--repeats",
        type=int_in_range(1, MAX_REPEATS, "timed runs per node"),
        default=10,
        help="host: timed runs per node, at least (default 10; the model runs for at least "
        "1 s of the clock too, so that a short burst of load cannot move the medians)",
    )
    add_host_threads_arg(p)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from edgecut.output import console, human_bytes, print_json, table
    from partitioner.model.capture import capture
    from partitioner.model.ops import unpriced_ops, unpriced_warning
    from partitioner.model.spec import load_model
    from partitioner.pricing.profiles import DEVICES

    # The cheap arguments first: a typo should not cost a capture.
    device = DEVICES.get(args.device)
    dtype = device.dtype(args.dtype)
    loaded = load_model(args.model, args.input_shape)
    captured = capture(loaded.module, loaded.example_input(), name=loaded.name)
    graph = captured.graph
    measured_total = None
    spread: dict[str, Any] = {}
    if args.device == "host":
        from partitioner.pricing.host import measure_host

        measurement = measure_host(captured, repeats=args.repeats, threads=args.threads)
        device = device.with_measurements(measurement.node_ms)
        measured_total = measurement.total_ms
        spread = {
            "threads": measurement.threads,
            "clock": measurement.clock,
            "total_spread": measurement.total.to_json(),
            "sum_of_layers_spread": measurement.layer_sums.to_json(),
        }
    layers: list[dict[str, Any]] = [
        {
            "name": n.name,
            "op": n.op,
            "flops": n.flops,
            "out_bytes": n.out_bytes,
            "ms": device.node_ms(n, dtype),
            "op_class": n.op_class,
            "shape": list(n.shape),
            "param_bytes": n.param_bytes,
        }
        for n in graph.nodes
    ]
    total = measured_total if measured_total is not None else sum(row["ms"] for row in layers)
    if args.json:
        print_json(
            {
                "model": graph.model,
                "device": device.name,
                "dtype": dtype,
                "total_ms": total,
                "sum_of_layers_ms": sum(row["ms"] for row in layers),
                "layers": layers,
                "unpriced_ops": unpriced_ops(graph),
                **spread,
            }
        )
        return 0
    rows = [
        [
            row["name"],
            row["op"],
            "x".join(map(str, row["shape"])),
            row["flops"] / 1e6,
            human_bytes(row["out_bytes"]),
            row["ms"],
        ]
        for row in layers
    ]
    console().print(
        table(
            f"{graph.model} on {device.name} ({dtype}): {total:.2f} ms per frame, "
            f"{graph.total_flops() / 1e9:.2f} GFLOP, {len(graph)} nodes",
            ["node", "op", "output", "MFLOP", "output size", "ms"],
            rows,
            right={3, 4, 5},
        )
    )
    if spread:
        t = spread["total_spread"]
        console().print(
            f"host, {spread['threads']} thread(s), {spread['clock']} clock: whole forward median {t['median_ms']:.2f} ms, "
            f"quartiles {t['q1_ms']:.2f}-{t['q3_ms']:.2f}, range {t['min_ms']:.2f}-"
            f"{t['max_ms']:.2f} over {t['samples']} timed blocks"
        )
    warning = unpriced_warning(graph)
    if warning:
        console().print(f"[yellow]{warning}[/]")
    return 0
