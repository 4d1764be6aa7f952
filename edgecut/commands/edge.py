"""``edgecut edge run``: stream frames through a head and a cloud node, print a summary."""

from __future__ import annotations

import argparse
from typing import Any

from edgecut.args import non_negative_float, output_file, positive_float, positive_int, threads
from edgecut.commands.cloud import default_threads, quiet_openmp, read_token_file, tls_error


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("edge", help="run the edge node (heads, codec, adaptive split, fallback)")
    actions = p.add_subparsers(dest="action", metavar="ACTION", parser_class=type(p))
    actions.required = True
    run = actions.add_parser("run", help="stream frames through the split network")
    run.add_argument("--repository", required=True, metavar="DIR", help="model repository")
    run.add_argument(
        "--cloud",
        required=True,
        metavar="HOST:PORT[,HOST:PORT...]",
        help="the cloud node; replicas of it as IP:PORT,IP:PORT,... or one name that resolves "
        "to several: frames spread over the healthy ones, a replica's failure is retried on another",
    )
    run.add_argument("--model", help="model of the repository (default: its only one)")
    run.add_argument("--version", help="fixed cut (default: the repository's default)")
    run.add_argument(
        "--source",
        default="synthetic",
        help="'synthetic' or a folder of images (default synthetic)",
    )
    run.add_argument(
        "--fps", type=non_negative_float, default=0.0, help="frames per second (0: unpaced)"
    )
    run.add_argument("--frames", type=int, help="frames to send (default 100, or each image once)")
    run.add_argument("--adaptive", action="store_true", help="switch cut by the breakpoint table")
    run.add_argument(
        "--window",
        type=positive_int,
        default=1,
        help="frames in flight at most (head, wire, cloud); 1: stop-and-wait (default 1)",
    )
    run.add_argument(
        "--late",
        choices=("queue", "drop"),
        default="queue",
        help="a frame captured while the window is full waits (queue) or is skipped (drop)",
    )
    run.add_argument("--codec", help="feature codec on the wire (default: the repository's)")
    run.add_argument(
        "--deadline-ms", type=positive_float, default=2000.0, help="per-frame cloud deadline"
    )
    run.add_argument(
        "--no-fallback", action="store_true", help="report errors instead of answering locally"
    )
    run.add_argument(
        "--initial-mbps", type=positive_float, help="uplink estimate before the first transfer"
    )
    run.add_argument(
        "--threads",
        type=threads,
        default=default_threads(),
        help=f"torch threads for the heads (default {default_threads()})",
    )
    run.add_argument("--tls-ca", metavar="PEM", help="verify the cloud with this CA (enables TLS)")
    run.add_argument("--tls", action="store_true", help="TLS with the system's trusted roots")
    run.add_argument("--tls-cert", metavar="PEM", help="client certificate (mutual TLS)")
    run.add_argument("--tls-key", metavar="PEM", help="client private key (mutual TLS)")
    run.add_argument("--tls-server-name", help="expected name in the cloud's certificate")
    run.add_argument("--token-file", metavar="FILE", help="bearer token (first line)")
    run.add_argument(
        "--trust-key",
        metavar="PUB.pem",
        help="load only versions signed by this Ed25519 public key (`edgecut repository sign`)",
    )
    run.add_argument(
        "--start-timeout-s",
        type=non_negative_float,
        default=10.0,
        help="wait this long for an unreachable cloud at start, then exit 2 (default 10)",
    )
    run.add_argument(
        "--emulate-mbps", type=positive_float, help="emulate an uplink of this rate (token bucket)"
    )
    run.add_argument(
        "--emulate-rtt-ms", type=non_negative_float, default=0.0, help="and this added delay"
    )
    run.add_argument(
        "--results",
        type=output_file("per-frame results"),
        metavar="FILE",
        help="write one JSON line per frame here",
    )
    run.add_argument("--json", action="store_true", help="print the summary as JSON")
    run.set_defaults(run=run_edge)


_CLIENT_TLS_FLAGS = {
    "ClientTLS.root_ca_file": "--tls-ca",
    "ClientTLS.cert_file": "--tls-cert",
    "ClientTLS.key_file": "--tls-key",
}


def client_tls(args: argparse.Namespace) -> Any:
    from pathlib import Path

    from protos.transport import ClientTLS

    if not (args.tls or args.tls_ca or args.tls_cert or args.tls_key):
        return None
    try:
        return ClientTLS(
            root_ca_file=Path(args.tls_ca) if args.tls_ca else None,
            cert_file=Path(args.tls_cert) if args.tls_cert else None,
            key_file=Path(args.tls_key) if args.tls_key else None,
            server_name_override=args.tls_server_name,
        )
    except (OSError, ValueError) as exc:
        raise tls_error(exc, _CLIENT_TLS_FLAGS) from None


def run_edge(args: argparse.Namespace) -> int:
    quiet_openmp()
    import json
    import logging
    import os
    import sys

    # gRPC's C core logs every failed TLS handshake at INFO on stderr; the start-up check
    # says what is wrong in one line instead. Set before grpc is imported.
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")

    from edgecut.output import print_json
    from partitioner.deploy.repository import open_model

    logging.basicConfig(level=logging.WARNING, format="edgecut edge: %(message)s")
    entry = open_model(args.repository, args.model)  # before torch: a bad path fails fast
    token = read_token_file(args.token_file)[0] if args.token_file else None
    trust_key = None
    if args.trust_key:
        from partitioner.deploy.signing import load_trust_key

        trust_key = load_trust_key(args.trust_key)
    import torch

    from edge_node.client import CloudClient
    from edge_node.heads import EdgeModel
    from edge_node.node import EdgeConfig, EdgeNode
    from edge_node.sources import open_source
    from edge_node.throttle import TokenBucket

    torch.set_num_threads(args.threads)
    model = EdgeModel.load(entry, trust=trust_key)
    uplink = (
        TokenBucket(args.emulate_mbps, delay_ms=args.emulate_rtt_ms)
        if args.emulate_mbps or args.emulate_rtt_ms
        else None
    )
    client = CloudClient(args.cloud, tls=client_tls(args), token=token, uplink=uplink)
    source = open_source(args.source, model.input_shape, frames=args.frames, fps=args.fps)
    config = EdgeConfig(
        version=args.version,
        adaptive=args.adaptive,
        codec=args.codec,
        deadline_ms=args.deadline_ms,
        fallback=not args.no_fallback,
        initial_mbps=args.initial_mbps,
        start_timeout_s=args.start_timeout_s,
        window=args.window,
        late=args.late,
    )
    results_file = open(args.results, "w") if args.results else None  # noqa: SIM115
    try:
        node = EdgeNode(model, client, config)

        def on_result(result: Any) -> None:
            if results_file is not None:
                results_file.write(json.dumps(result.to_json()) + "\n")

        try:
            summary = node.run(source, on_result)
        except KeyboardInterrupt:
            summary = node.summary()
            print("edgecut edge run: interrupted; summary of the frames so far", file=sys.stderr)
    finally:
        client.close()
        if results_file is not None:
            results_file.close()
    if args.json:
        print_json(summary)
    else:
        print_summary(summary)
    return 1 if summary["error_frames"] else 0


def print_summary(summary: dict[str, Any]) -> None:
    from edgecut.output import console, human_bytes, table

    lat = summary["latency_ms"]
    br = summary["breakdown_ms"]
    rows = [
        ["frames (cloud / local / error)",
         f"{summary['frames']} ({summary['cloud_frames']} / {summary['local_frames']} / "
         f"{summary['error_frames']})"],
        ["latency p50 / p95 / p99 ms", " / ".join(_ms(lat[k]) for k in ("p50", "p95", "p99"))],
        ["edge / transfer / cloud ms (mean)",
         " / ".join(_ms(br[k]) for k in ("edge", "transfer", "cloud"))],
        ["local ms (mean)", _ms(br["local"])],
        ["bytes sent", human_bytes(summary["bytes_sent"])],
        ["cut switches / fallbacks / probes",
         f"{summary['cut_switches']} / {summary['fallbacks']} / {summary['probes']}"],
        ["uplink estimate Mbit/s, base RTT ms",
         f"{_ms(summary['estimate_mbps'])}, {_ms(summary['rtt_ms'])}"],
        ["captured: answered / skipped / missed / failed",
         f"{summary['captured']}: {summary['answered']} / {summary['skipped']} / "
         f"{summary['missed']} / {summary['failed']}"],
        ["window, late policy", f"{summary['window']}, {summary['late']}"],
        ["frames per second", _ms(summary["fps"])],
    ]  # fmt: skip
    console().print(
        table(f"edge run: {summary['model']} via {summary['cloud']}", ["", "value"], rows)
    )


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"
