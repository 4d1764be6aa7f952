"""``edgecut testbed``: a real kernel-shaped link between an edge and a cloud node (root).

``run`` builds two network namespaces joined by a veth pair whose edge-to-cloud direction is
shaped with tc tbf (docs/testbed.md), serves a repository from the cloud namespace, runs the
edge node in the edge namespace (optionally replaying a trace on the link) and prints the
edge's summary; ``transfer`` times a bulk transfer over such a link; ``cleanup`` removes
what a killed testbed left behind. Everything is removed on exit, error and Ctrl-C.
"""

from __future__ import annotations

import argparse
from typing import Any

from edgecut.args import input_dir, non_negative_float, positive_float, positive_int, threads


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "testbed", help="edge and cloud nodes over a kernel-shaped link (tc tbf; needs root)"
    )
    actions = p.add_subparsers(dest="action", metavar="ACTION", parser_class=type(p))
    actions.required = True

    run = actions.add_parser("run", help="serve a repository and stream frames over the link")
    run.add_argument(
        "--repository", required=True, type=input_dir("model repository"), metavar="DIR"
    )
    _link_args(run)
    run.add_argument(
        "--trace",
        metavar="NAME|FILE",
        help="replay this uplink trace on the link (packaged name or Mahimahi/pairs file)",
    )
    run.add_argument(
        "--trace-step-s",
        type=positive_float,
        default=1.0,
        help="the link's rate changes every this many seconds, to the trace's mean (default 1)",
    )
    run.add_argument(
        "--trace-start-s",
        type=non_negative_float,
        default=0.0,
        help="start this far into the trace (default 0)",
    )
    run.add_argument("--frames", type=positive_int, default=50, help="frames (default 50)")
    run.add_argument("--fps", type=non_negative_float, default=0.0, help="0: unpaced (default)")
    run.add_argument("--version", help="fixed cut (default: the repository's default)")
    run.add_argument("--adaptive", action="store_true", help="switch cut by the breakpoint table")
    run.add_argument("--edge-threads", type=threads, default=1, help="edge torch threads (1)")
    run.add_argument("--cloud-threads", type=threads, default=1, help="cloud torch threads (1)")
    run.add_argument(
        "--edge-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="pass ARG on to `edgecut edge run` (repeatable; e.g. --edge-arg=--codec=int8)",
    )
    run.add_argument(
        "--cloud-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="pass ARG on to `edgecut cloud serve` (repeatable)",
    )
    run.add_argument("--json", action="store_true", help="print JSON")
    run.set_defaults(run=run_testbed)

    transfer = actions.add_parser("transfer", help="time a bulk TCP transfer over a shaped link")
    _link_args(transfer)
    transfer.add_argument(
        "--bytes", type=positive_int, default=1_000_000, help="bytes to send (default 1000000)"
    )
    transfer.add_argument("--json", action="store_true", help="print JSON")
    transfer.set_defaults(run=run_transfer)

    cleanup = actions.add_parser(
        "cleanup", help="remove testbed namespaces, links and processes left behind"
    )
    cleanup.add_argument(
        "--all",
        action="store_true",
        help="also remove the testbeds of processes still running (default: only orphans)",
    )
    cleanup.add_argument("--json", action="store_true", help="print JSON")
    cleanup.set_defaults(run=run_cleanup)


def _link_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--rate-mbit",
        type=positive_float,
        default=5.0,
        help="edge-to-cloud rate, Mbit/s (default 5)",
    )
    p.add_argument(
        "--delay-ms",
        type=non_negative_float,
        default=0.0,
        help="fixed edge-to-cloud delay (netem if the kernel has it, else added by the edge)",
    )


def run_testbed(args: argparse.Namespace) -> int:
    import sys
    from pathlib import Path

    from edgecut.output import print_json
    from edgecut.testbed.link import check_root
    from edgecut.testbed.run import Testbed, TestbedConfig, signals_raise

    check_root()
    if args.trace:
        from partitioner.pricing.network import load_trace

        load_trace(args.trace)  # a bad trace fails before anything is built
    edge_args = ["--frames", str(args.frames), "--fps", f"{args.fps:g}"]
    edge_args += ["--version", args.version] if args.version else []
    edge_args += ["--adaptive"] if args.adaptive else []
    config = TestbedConfig(
        repository=Path(args.repository).resolve(),
        rate_mbit=args.rate_mbit,
        delay_ms=args.delay_ms,
        trace=args.trace,
        trace_step_s=args.trace_step_s,
        trace_start_s=args.trace_start_s,
        cloud_threads=args.cloud_threads,
        edge_threads=args.edge_threads,
        cloud_args=tuple(args.cloud_arg),
    )
    with signals_raise():
        try:
            with Testbed(config) as bed:
                assert bed.link is not None
                link = bed.link
                print(
                    f"edgecut testbed: {link.name}: cloud at {bed.cloud_target}, "
                    f"{link.rate_mbit:g} Mbit/s, delay {link.delay_ms:g} ms ({link.delay_via})",
                    file=sys.stderr,
                    flush=True,
                )
                result = bed.run_edge([*edge_args, *args.edge_arg])
                report = {
                    "link": {
                        "name": link.name,
                        "rate_mbit": config.rate_mbit,
                        "delay_ms": link.delay_ms,
                        "delay_via": link.delay_via,
                        "trace": config.trace,
                        "rates": [list(r) for r in result.rates],
                        "qdisc": result.qdisc,
                    },
                    "edge": result.summary,
                    "edge_returncode": result.returncode,
                }
        except KeyboardInterrupt:
            print("edgecut testbed: interrupted; the testbed is removed", file=sys.stderr)
            return 130
    if args.json:
        print_json(report)
    else:
        _print_report(report)
    return result.returncode


def _print_report(report: dict[str, Any]) -> None:
    from edgecut.commands.edge import print_summary
    from edgecut.output import console

    link = report["link"]
    rates = link["rates"]
    console().print(
        f"link {link['name']}: {len(rates)} rate(s) applied "
        f"({min(r[1] for r in rates):.2f}..{max(r[1] for r in rates):.2f} Mbit/s), "
        f"delay {link['delay_ms']:g} ms ({link['delay_via']})"
    )
    print_summary(report["edge"])


def run_transfer(args: argparse.Namespace) -> int:
    from edgecut.output import print_json
    from edgecut.testbed.link import Link
    from edgecut.testbed.probe import measure_transfer
    from edgecut.testbed.run import signals_raise

    with signals_raise(), Link.create(args.rate_mbit, delay_ms=args.delay_ms) as link:
        seconds = measure_transfer(link, args.bytes)
        qdisc = link.qdisc_stats()
    expected_s = args.bytes * 8 / (args.rate_mbit * 1e6)
    report = {
        "bytes": args.bytes,
        "rate_mbit": args.rate_mbit,
        "seconds": seconds,
        "expected_seconds": expected_s,
        "goodput_mbps": args.bytes * 8 / seconds / 1e6,
        "qdisc": qdisc,
    }
    if args.json:
        print_json(report)
    else:
        print(
            f"{args.bytes} bytes in {seconds:.3f} s over {args.rate_mbit:g} Mbit/s "
            f"({report['goodput_mbps']:.2f} Mbit/s goodput; payload alone: {expected_s:.3f} s)"
        )
    return 0


def run_cleanup(args: argparse.Namespace) -> int:
    from edgecut.output import print_json
    from edgecut.testbed.link import check_root, cleanup

    check_root()
    namespaces, links = cleanup(everything=args.all)
    if args.json:
        print_json({"namespaces": namespaces, "links": links})
    else:
        print(f"removed {len(namespaces)} namespace(s) and {len(links)} link(s)")
    return 0
