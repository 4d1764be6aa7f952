"""``edgecut devices``: device and network presets, with their sources."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("devices", help="list device and network presets")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from edgecut.output import console, print_json, table
    from partitioner.pricing.network import NETWORKS, packaged_traces
    from partitioner.pricing.profiles import DEVICES

    devices = DEVICES.list()
    if args.json:
        print_json(
            {
                "devices": [
                    {
                        "name": d.name,
                        "description": d.description,
                        "peak_gflops": dict(d.peak_gflops),
                        "mem_bandwidth_gbps": d.mem_bandwidth_gbps,
                        "op_overhead_us": d.op_overhead_us,
                        "default_dtype": d.default_dtype,
                        "active_power_w": d.active_power_w,
                        "idle_power_w": d.idle_power_w,
                        "source": d.source,
                    }
                    for d in devices
                ],
                "networks": [
                    {
                        "name": n.name,
                        "uplink_mbps": n.uplink_mbps,
                        "rtt_ms": n.rtt_ms,
                        "radio_nj_per_bit": n.radio_nj_per_bit,
                        "radio_base_mw": n.radio_base_mw,
                        "source": n.source,
                    }
                    for n in NETWORKS.list()
                ],
                "traces": sorted(packaged_traces()),
            }
        )
        return 0
    out = console()
    out.print(
        table(
            "Devices (--edge / --cloud / --device)",
            ["name", "dtype", "peak GFLOP/s", "GB/s", "µs/op", "W", "source"],
            [
                [
                    d.name,
                    d.default_dtype,
                    d.peak_gflops[d.default_dtype],
                    d.mem_bandwidth_gbps,
                    d.op_overhead_us,
                    d.active_power_w,
                    d.source,
                ]
                for d in devices
            ],
            right={2, 3, 4, 5},
        )
    )
    out.print(
        table(
            "Networks (--network)",
            ["name", "uplink Mbit/s", "RTT ms", "source"],
            [[n.name, n.uplink_mbps, n.rtt_ms, n.source] for n in NETWORKS.list()],
            right={1, 2},
        )
    )
    out.print(
        "Packaged traces (--network NAME or a trace file): " + ", ".join(sorted(packaged_traces()))
    )
    return 0
