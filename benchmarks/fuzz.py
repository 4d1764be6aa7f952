"""Hostile ModelInfer requests at scale: 10,000+ through the node's handler, thousands over gRPC.

    python benchmarks/fuzz.py [--cases 10000] [--live 3000] [--clients 4] [--seed 0]

The property is the one of tests/cloud_node/test_fuzz.py, run here on --cases requests drawn
from the same hypothesis strategies (valid requests of every codec, mutated structurally or byte
by byte, random bytes, protobuf-shaped noise), through ``InferenceService.ModelInferWire`` in
process: each request decodes exactly to the cut's crossing tensors or is refused with one of
the project's own one-line errors, within a memory bound (traced by tracemalloc; the handler's
per-request limit is 1 MiB here). A case running longer than --hang-s dumps every thread's
stack and ends the run. Printed: cases, crashes and other violations (0 expected), the distinct
error classes behind refusals, the classes codecs raised that a refusal wraps, time.

Then a real node (`edgecut cloud serve`, its own process, default limits) gets --live further
requests over gRPC on loopback from --clients threads: it must answer none of them INTERNAL,
UNKNOWN or UNAVAILABLE, stay up, and afterwards answer a valid request of every cut as the
in-process handler does. Its RSS, threads and open descriptors are printed before and after.
"""

from __future__ import annotations

import argparse
import faulthandler
import importlib.util
import queue
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from node_process import NodeProcess

ROOT = Path(__file__).resolve().parents[1]
_BAD_LIVE_CODES = frozenset({"INTERNAL", "UNKNOWN", "UNAVAILABLE", "DEADLINE_EXCEEDED"})


def load_property() -> Any:
    """tests/cloud_node/test_fuzz.py as a module: the strategies, harness and property."""
    path = ROOT / "tests" / "cloud_node" / "test_fuzz.py"
    spec = importlib.util.spec_from_file_location("fuzz_property", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while it executes
    spec.loader.exec_module(module)
    return module


def draw_cases(fuzz: Any, targets: list, count: int, seed: int, each: Callable[[Any], None]) -> int:
    """Call ``each`` on ``count`` cases of ``fuzz.hostile_requests`` (generation only: no
    shrinking, no database), seeded; the number of cases drawn."""
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import seed as hypothesis_seed
    from hypothesis import strategies as st

    drawn = 0

    @hypothesis_seed(seed)
    @settings(
        max_examples=count,
        database=None,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(st.data())
    def run(data: Any) -> None:
        nonlocal drawn
        each(data.draw(fuzz.hostile_requests(targets)))
        drawn += 1  # after: a draw past hypothesis's size limit is discarded, not counted

    run()
    return drawn


def in_process(fuzz: Any, harness: Any, count: int, seed: int, hang_s: float) -> bool:
    kinds: Counter[str] = Counter()
    outcomes: Counter[str] = Counter()
    refusals: Counter[tuple[str, str]] = Counter()
    wrapped: Counter[str] = Counter()
    steps: Counter[str] = Counter()
    violations: list[str] = []
    slowest = (0.0, "")
    peak = (0, 0)  # (bytes, bound)

    def each(case: Any) -> None:
        nonlocal slowest, peak
        faulthandler.dump_traceback_later(hang_s, exit=True)
        outcome = harness.call(case.data)
        faulthandler.cancel_dump_traceback_later()
        kinds[case.kind] += 1
        steps.update(s.split(":")[0] for s in case.steps[2:])
        outcomes[outcome.kind] += 1
        if outcome.kind == "refused":
            refusals[(outcome.error, outcome.code)] += 1
            if inner := fuzz.wrapped_error(outcome.message):
                wrapped[inner] += 1
        found = fuzz.problems(harness, case, outcome)
        if found:
            violations.append(f"{case.steps} ({len(case.data)} bytes): " + "; ".join(found))
        if outcome.seconds > slowest[0]:
            slowest = (outcome.seconds, ",".join(case.steps))
        bound = fuzz.MEMORY_SLACK_BYTES + 3 * len(case.data) + 3 * harness.max_request_bytes
        if outcome.peak_bytes > peak[0]:
            peak = (outcome.peak_bytes, bound)

    started = time.perf_counter()
    drawn = draw_cases(fuzz, harness.targets, count, seed, each)
    elapsed = time.perf_counter() - started
    crashes = outcomes["crashed"]
    print(
        f"in process: {drawn} cases in {elapsed:.1f} s ({elapsed / max(drawn, 1) * 1e3:.2f} ms each)"
    )
    print(f"  kinds: {dict(sorted(kinds.items()))}")
    print(f"  mutations applied: {dict(steps.most_common())}")
    print(f"  outcomes: {dict(sorted(outcomes.items()))}")
    print(f"  crashes (an exception other than a refusal escaped): {crashes}")
    print(f"  property violations (crashes included): {len(violations)}")
    for v in violations[:10]:
        print(f"    {v[:2000]}")
    print(f"  distinct error classes behind refusals: {len({e for e, _ in refusals})}")
    for (error, code), n in sorted(refusals.items(), key=lambda kv: -kv[1]):
        print(f"    {error:<16} {code:<20} {n:>7}")
    print(f"  codec errors wrapped in those refusals: {dict(wrapped.most_common())}")
    print(f"  slowest case {slowest[0] * 1e3:.1f} ms ({slowest[1]})")
    print(
        f"  largest traced allocation of a case {peak[0] / 2**20:.2f} MiB "
        f"(its bound {peak[1] / 2**20:.2f} MiB)"
    )
    return not violations and drawn >= count


def valid_request(fuzz: Any, target: Any) -> bytes:
    from partitioner.deploy import crossing
    from protos import serde, splice

    rng = np.random.default_rng(7)
    tensors = [rng.standard_normal((1, *s.shape[1:]), dtype=np.float32) for s in target.crossing]
    inputs, params = crossing.encode_inputs(tensors, target.crossing, "none")
    return splice.request_to_wire(
        serde.InferRequest(
            target.model, inputs, model_version=target.version, input_parameters=params
        )
    )


def live(fuzz: Any, harness: Any, root: Path, count: int, clients: int, seed: int) -> bool:
    import grpc

    from protos import splice, transport

    workdir = Path(tempfile.mkdtemp(prefix="edgecut-fuzz-live-"))
    with NodeProcess(root, workdir, threads=1) as node:
        channel = transport.build_channel(node.target)
        infer = channel.unary_unary(
            "/inference.GRPCInferenceService/ModelInfer", _registered_method=True
        )
        checks = [(t, valid_request(fuzz, t)) for t in harness.targets]
        for _, data in checks:  # warm up: every tail has run once
            infer(data, timeout=60)
        before = node.stats()
        codes: Counter[str] = Counter()
        bad: list[str] = []
        work: queue.Queue[Any] = queue.Queue(maxsize=4 * clients)
        lock = threading.Lock()

        def client() -> None:
            while (case := work.get()) is not None:
                found = []
                try:
                    infer(case.data, timeout=60)
                    code = "OK"
                except grpc.RpcError as exc:
                    code = exc.code().name
                    details = exc.details() or ""
                    if code in _BAD_LIVE_CODES or "\n" in details:
                        found.append(f"{case.steps}: {code}: {details[:300]!r}")
                if case.expected is not None and code != "OK":
                    found.append(f"{case.steps}: a valid request answered {code}")
                with lock:
                    codes[code] += 1
                    bad.extend(found)

        threads = [threading.Thread(target=client) for _ in range(clients)]
        for t in threads:
            t.start()
        started = time.perf_counter()
        drawn = draw_cases(fuzz, harness.targets, count, seed, work.put)
        for _ in threads:
            work.put(None)
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - started
        time.sleep(1.0)  # let the server release what the last calls held
        after = node.stats()
        answered = []
        for target, data in checks:
            reply = splice.response_from_wire(infer(data, timeout=60))
            local = splice.response_from_wire(harness.call(data).reply)
            same = all(
                np.allclose(reply.outputs[k], local.outputs[k], rtol=1e-5, atol=1e-6)
                for k in local.outputs
            )
            answered.append(same)
            if not same:
                bad.append(f"{target.model} v{target.version}: the node's answer differs")
        alive = node.alive
        channel.close()
    print(
        f"over gRPC: {drawn} cases from {clients} clients in {elapsed:.1f} s to a node "
        f"on {node.target}"
    )
    print(f"  status codes: {dict(codes.most_common())}")
    print(f"  INTERNAL/UNKNOWN/UNAVAILABLE/DEADLINE_EXCEEDED or multi-line details: {len(bad)}")
    for b in bad[:10]:
        print(f"    {b}")
    print(
        f"  node alive after: {alive}; valid request of every cut answered correctly after: "
        f"{sum(answered)}/{len(answered)}"
    )
    print(f"  {'server':<12}{'RSS MB':>9}{'peak MB':>9}{'threads':>9}{'fds':>6}")
    for label, s in (("before", before), ("after", after)):
        print(f"  {label:<12}{s.rss_mb:>9.1f}{s.hwm_mb:>9.1f}{s.threads:>9}{s.fds:>6}")
    print(f"  node log: {node.log}")
    return alive and all(answered) and not bad and drawn >= count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=10_000, help="cases through the handler")
    parser.add_argument("--live", type=int, default=3_000, help="cases sent over gRPC (0: none)")
    parser.add_argument("--clients", type=int, default=4, help="gRPC client threads")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--hang-s", type=float, default=60.0, help="a case longer than this hangs")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(1)  # the node in --live runs one thread too; 2 shared cores
    fuzz = load_property()
    with tempfile.TemporaryDirectory(prefix="edgecut-fuzz-") as tmp:
        t0 = time.perf_counter()
        root = fuzz.build_fuzz_repository(Path(tmp))
        harness = fuzz.Harness(root)
        print(
            f"repository built and loaded in {time.perf_counter() - t0:.1f} s: "
            + ", ".join(
                f"{t.model} v{t.version} ({' + '.join(s.name for s in t.crossing)})"
                for t in harness.targets
            )
        )
        ok = in_process(fuzz, harness, args.cases, args.seed, args.hang_s)
        if args.live:
            ok = live(fuzz, harness, root, args.live, args.clients, args.seed + 1) and ok
        harness.close()
    print("property held" if ok else "PROPERTY BROKEN")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
