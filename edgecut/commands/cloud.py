"""``edgecut cloud serve``: serve every tail of a model repository over gRPC (and, with
``--http-port``, over HTTP/REST too)."""

from __future__ import annotations

import argparse
import os

from edgecut.args import (
    check_listen_port,
    message_mb,
    non_negative_float,
    output_file,
    port_number,
    positive_int,
    threads,
)


def default_threads() -> int:
    """Torch threads for a node: the cores, at most 4 (more rarely helps one batch)."""
    return max(1, min(4, os.cpu_count() or 1))


def quiet_openmp() -> None:
    """Idle OpenMP threads sleep instead of spinning (a spinning pool on a busy host is ~50x
    slower); must happen before torch is imported, so every node command calls it first."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def warn(message: str) -> None:
    """One warning line on stderr, where a user starting a node sees it."""
    import sys

    print(f"edgecut: warning: {message}", file=sys.stderr, flush=True)


def tls_error(exc: Exception, flags: dict[str, str]) -> Exception:
    """A ServerTLS/ClientTLS error as an EdgecutError naming the flags (``cert_file`` ->
    ``--tls-cert``) instead of the fields."""
    from partitioner.errors import EdgecutError

    message = str(exc)
    for field, flag in flags.items():
        message = message.replace(field, flag)
    return EdgecutError(message)


def read_token_file(path: str) -> tuple[str, ...]:
    """Bearer tokens from a file, one per line (blank lines and ``#`` comments skipped).

    A file that group or others can read is used, with a warning: a token is a password.
    """
    from pathlib import Path

    from partitioner.deploy.files import NotRegularFileError, open_regular
    from partitioner.errors import EdgecutError

    p = Path(path)
    try:
        with open_regular(p) as f:  # a FIFO would block a plain open until a writer came
            text = f.read(1 << 20).decode()
    except NotRegularFileError:
        raise EdgecutError(f"token file {p} is not a regular file: expected a text file") from None
    except IsADirectoryError:
        raise EdgecutError(f"token file {p} is a directory: expected a text file") from None
    except FileNotFoundError:
        raise EdgecutError(f"token file {p} does not exist") from None
    except PermissionError:
        raise EdgecutError(
            f"token file {p} cannot be read (permission denied): the node needs read access"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise EdgecutError(f"token file {p} cannot be read: {exc}") from None
    tokens = tuple(
        line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")
    )
    if not tokens:
        raise EdgecutError(f"token file {p} holds no token: expected one token per line")
    for token in tokens:
        if any(c.isspace() for c in token):
            raise EdgecutError(f"token file {p}: a token contains whitespace; one token per line")
    mode = p.stat().st_mode & 0o777
    if mode & 0o077:
        warn(
            f"token file {p} is readable by group or others (mode {mode:04o}): run `chmod 600 {p}`"
        )
    return tokens


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("cloud", help="run the cloud node (gRPC, Open Inference Protocol)")
    actions = p.add_subparsers(dest="action", metavar="ACTION", parser_class=type(p))
    actions.required = True
    serve = actions.add_parser("serve", help="serve every tail of a model repository")
    serve.add_argument("--repository", required=True, metavar="DIR", help="model repository")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=port_number, default=8001, help="0 picks a free port")
    serve.add_argument(
        "--port-file",
        type=output_file("the bound port"),
        metavar="FILE",
        help="write the bound port here once ready",
    )
    serve.add_argument(
        "--http-port",
        type=port_number,
        help="also serve OIP over HTTP/REST (KServe v2) here, same TLS and tokens; 0 picks a "
        "free port (default: off)",
    )
    serve.add_argument(
        "--http-port-file",
        type=output_file("the bound HTTP port"),
        metavar="FILE",
        help="write the bound HTTP port here once ready",
    )
    serve.add_argument("--tls-cert", metavar="PEM", help="server certificate (enables TLS)")
    serve.add_argument("--tls-key", metavar="PEM", help="server private key")
    serve.add_argument("--tls-client-ca", metavar="PEM", help="require client certs from this CA")
    serve.add_argument(
        "--token-file", metavar="FILE", help="bearer tokens, one per line (enables auth)"
    )
    serve.add_argument(
        "--max-batch", type=positive_int, default=16, help="frames per batch (1: no batching)"
    )
    serve.add_argument(
        "--batch-timeout-ms",
        type=non_negative_float,
        default=1.0,
        help="how long a request waits for others to batch with (default 1)",
    )
    serve.add_argument(
        "--max-queue", type=positive_int, default=1024, help="queued frames before refusing"
    )
    serve.add_argument("--workers", type=positive_int, default=64, help="gRPC handler threads")
    serve.add_argument(
        "--instances",
        type=positive_int,
        default=1,
        help="instances of each tail running batches at once, each on --threads torch threads, "
        "sharing the tail's weights (like Triton's instance groups; default 1)",
    )
    serve.add_argument(
        "--threads",
        type=threads,
        help=f"torch threads of each instance (default: {default_threads()} cores shared by "
        "the instances, at least 1 each)",
    )
    serve.add_argument(
        "--max-message-mb",
        type=message_mb,
        default=64,
        help="gRPC message limit, MiB: 1..2047 (gRPC's limit is under 2 GiB; default 64)",
    )
    serve.add_argument("--metrics-port", type=port_number, help="serve Prometheus /metrics here")
    serve.add_argument("--metrics-host", default="127.0.0.1", help="address for /metrics")
    serve.add_argument(
        "--admin-token-file",
        metavar="FILE",
        help="admin bearer tokens, one per line, none of them an inference token: only their "
        "holders may upload splits with DeploySplit (without this file uploads are off)",
    )
    serve.add_argument(
        "--no-deploy",
        action="store_true",
        help="refuse DeploySplit uploads (the default unless --admin-token-file is given)",
    )
    serve.add_argument(
        "--trust-key",
        metavar="PUB.pem",
        help="serve, and accept uploads of, only versions signed by this Ed25519 public key "
        "(`edgecut repository keygen` / `sign`)",
    )
    serve.add_argument(
        "--grace-s",
        type=non_negative_float,
        default=10.0,
        help="on SIGTERM/SIGINT, let in-flight calls finish this long (default 10)",
    )
    serve.add_argument(
        "--drain-s",
        type=non_negative_float,
        default=0.0,
        help="on SIGTERM/SIGINT, report NOT_SERVING this long before refusing calls",
    )
    serve.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    serve.set_defaults(run=run_serve)


_SERVER_TLS_FLAGS = {
    "ServerTLS.cert_file": "--tls-cert",
    "ServerTLS.key_file": "--tls-key",
    "ServerTLS.client_ca_file": "--tls-client-ca",
}


def run_serve(args: argparse.Namespace) -> int:
    quiet_openmp()
    import signal
    import threading
    from pathlib import Path

    from partitioner.deploy.repository import scan_repository
    from partitioner.errors import EdgecutError
    from protos.transport import ServerTLS

    if args.metrics_port is not None and args.metrics_port == args.port != 0:
        raise EdgecutError(f"--metrics-port {args.port}: expected a port other than --port")
    if args.http_port is not None and args.http_port == args.port != 0:
        raise EdgecutError(f"--http-port {args.port}: expected a port other than --port")
    if args.http_port_file and args.http_port is None:
        raise EdgecutError("--http-port-file needs --http-port")
    check_listen_port("--port", args.host, args.port)  # before anything loads
    if args.http_port is not None:
        check_listen_port("--http-port", args.host, args.http_port)
    if args.metrics_port is not None:
        check_listen_port("--metrics-port", args.metrics_host, args.metrics_port)
    tls = None
    if args.tls_cert or args.tls_key or args.tls_client_ca:
        if not (args.tls_cert and args.tls_key):
            raise EdgecutError(
                "TLS needs both --tls-cert and --tls-key (and optionally --tls-client-ca)"
            )
        try:
            tls = ServerTLS(Path(args.tls_cert), Path(args.tls_key), args.tls_client_ca)
        except (OSError, ValueError) as exc:
            raise tls_error(exc, _SERVER_TLS_FLAGS) from None
    tokens = read_token_file(args.token_file) if args.token_file else ()
    admin_tokens = read_token_file(args.admin_token_file) if args.admin_token_file else ()
    if args.no_deploy and admin_tokens:
        raise EdgecutError("--no-deploy refuses the uploads --admin-token-file allows: give one")
    trust_key = None
    if args.trust_key:
        from partitioner.deploy.signing import load_trust_key

        trust_key = load_trust_key(args.trust_key)
    # A bad path fails here, before torch is imported; a bad model or version is served as
    # FAILED, with its reason, beside the good ones.
    scan_repository(args.repository, keep_broken=True)

    from cloud_node.logs import configure
    from cloud_node.server import CloudConfig, CloudNode, StartCancelled

    logger = configure(args.log_level)
    node = CloudNode(
        CloudConfig(
            repository=Path(args.repository),
            host=args.host,
            port=args.port,
            tls=tls,
            tokens=tokens,
            max_batch=args.max_batch,
            batch_timeout_ms=args.batch_timeout_ms,
            max_queue_frames=args.max_queue,
            workers=max(args.workers, 2 * min(args.max_batch, 16)),
            max_message_bytes=args.max_message_mb * 1024 * 1024,
            threads=args.threads or max(1, default_threads() // args.instances),
            instances=args.instances,
            metrics_port=args.metrics_port,
            metrics_host=args.metrics_host,
            http_port=args.http_port,
            admin_tokens=admin_tokens,
            trust_key=trust_key,
        ),
        logger=logger,
    )
    stopping = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        if not stopping.is_set():
            stopping.set()
            threading.Thread(
                target=node.stop,
                args=(args.grace_s,),
                kwargs={"drain_s": args.drain_s},
                daemon=True,
            ).start()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    exposure = node.config.exposure()
    if exposure is not None:
        warn(exposure)
    try:
        port = node.start()
    except StartCancelled:  # a signal during start-up: stop, never serve
        while not node.wait(timeout_s=0.5):
            pass
        return 0
    if args.http_port_file and node.http_port is not None:
        tmp = Path(args.http_port_file + ".tmp")
        tmp.write_text(f"{node.http_port}\n")
        os.replace(tmp, args.http_port_file)
    if args.port_file:
        tmp = Path(args.port_file + ".tmp")
        tmp.write_text(f"{port}\n")
        os.replace(tmp, args.port_file)
    while not node.wait(timeout_s=0.5):
        pass
    return 0
