"""Arguments shared by the commands that plan (profile, plan, split, compress, demo).

The CLI only parses text here. What the values may be (devices, networks, codecs,
bandwidths) is checked where a planner is made (:meth:`partitioner.planner.Planner.create`);
the objectives and solvers a flag offers are read from the packages that define them.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterator, Sequence
from typing import Any


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def port_number(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port in 0..65535, got {value}")
    return value


def non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def bandwidth_range(text: str) -> tuple[float, float]:
    lo, sep, hi = text.partition(":")
    try:
        low, high = float(lo), float(hi)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected LO:HI in Mbit/s such as 1:100, got {text!r}"
        ) from None
    if not sep or not (0 < low < high):
        raise argparse.ArgumentTypeError(f"expected LO:HI with 0 < LO < HI, got {text!r}")
    return low, high


class LazyChoices:
    """argparse ``choices`` read from the package that defines them when first consulted,
    so building the parser (every ``edgecut`` start) imports neither numpy nor numba.
    """

    def __init__(self, load: Callable[[], Sequence[str]]) -> None:
        self._load = load

    def __contains__(self, value: object) -> bool:
        return value in self._load()

    def __iter__(self) -> Iterator[str]:
        return iter(self._load())


def objective_names() -> Sequence[str]:
    from partitioner.pricing.cost import OBJECTIVES  # numpy: only once the flag is read

    return OBJECTIVES


def solver_names() -> Sequence[str]:
    from partitioner.solve import SOLVERS  # numba: only once the flag is read

    return SOLVERS.names()


def read_plan_json(path: str) -> dict[str, Any]:
    """The JSON object of a plan file (``edgecut plan --out``), with one-line errors."""
    import json
    from pathlib import Path

    from partitioner.errors import EdgecutError

    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise EdgecutError(f"--plan {path}: no such file") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise EdgecutError(f"--plan {path}: not a readable JSON plan: {exc}") from None
    if not isinstance(data, dict):
        raise EdgecutError(f"--plan {path}: expected a JSON object from `edgecut plan --json`")
    return data


def add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--model",
        required=True,
        help="zoo name (edgecut models), pkg.module:factory or path/to/file.py:factory",
    )
    p.add_argument("--input-shape", help="input shape with batch, e.g. 1,3,224,224 (zoo default)")


def add_plan_args(p: argparse.ArgumentParser) -> None:
    add_model_args(p)
    p.add_argument("--edge", default="rpi4", help="edge device preset or host (default rpi4)")
    p.add_argument("--cloud", default="x86-server", help="cloud device preset (default x86-server)")
    p.add_argument(
        "--network",
        default="lte",
        help="network preset, packaged trace or trace file (default lte)",
    )
    p.add_argument("--bandwidth-mbps", type=float, help="uplink Mbit/s (overrides --network)")
    p.add_argument("--rtt-ms", type=float, help="round trip ms (overrides --network)")
    p.add_argument(
        "--objective",
        default="latency",
        choices=LazyChoices(objective_names),
        metavar="NAME",  # argparse would list the choices at start-up to build a metavar
        help="what to minimise: %(choices)s (default %(default)s)",
    )
    p.add_argument(
        "--solver",
        default="auto",
        choices=LazyChoices(solver_names),
        metavar="NAME",
        help="%(choices)s (default %(default)s)",
    )
    p.add_argument(
        "--codec",
        default="none",
        help="feature codec for crossing tensors: none, fp16, int8, or with a lossless stage "
        "such as int8+zstd (default none)",
    )
    p.add_argument("--edge-dtype", help="compute dtype on the edge (device default, e.g. int8)")


def make_planner(args: argparse.Namespace) -> Any:
    """The planner the plan arguments describe; Planner.create checks them before capturing."""
    from partitioner.model.spec import parse_input_shape
    from partitioner.planner import Planner

    return Planner.create(
        args.model,
        edge=args.edge,
        cloud=args.cloud,
        network=args.network,
        bandwidth_mbps=args.bandwidth_mbps,
        rtt_ms=args.rtt_ms,
        codec=args.codec,
        input_shape=parse_input_shape(args.input_shape) if args.input_shape else None,
        edge_dtype=getattr(args, "edge_dtype", None),
    )
