"""Ray adapter: the only module of edgecut that imports ray (lazily, on first use).

:func:`simulate` runs the same window loop as :func:`simulator.engine.simulate`, with
each :class:`~simulator.camera.CameraShard` and each :class:`~simulator.site.CloudSite`
in its own actor: per window, every shard actor returns one frame batch per site as an
object ref, and each site actor's ``ingest`` takes those refs (Ray resolves them) in
shard order. Calls are queued ahead so shards simulate window ``w + 1`` while sites
serve window ``w``; at most ``in_flight`` windows are outstanding, which bounds the
object store. Results equal the local engine's for any number of shards.

:func:`map_plans` runs independent small simulations (a sweep's grid) as Ray tasks.

Where it runs (:func:`cluster_address`): ``address`` (``--address``: ``auto``, the
cluster of the last ``ray start`` on this machine, or ``HOST:PORT``) joins that cluster
as it is, after checking that it answers; else ``RAY_ADDRESS`` (which ``ray job submit``
sets for its jobs) does the same; else a local Ray is started (no dashboard, this
machine's CPUs) with ``address="local"``, so that neither a running cluster nor the
address file a dead one left behind is joined, and shut down afterwards. A Ray already
initialised by the caller (tests) is used as is and left running.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any

from partitioner.errors import EdgecutError
from simulator.camera import CameraShard, FrameBatch, ShardResult
from simulator.engine import Progress, warm_up
from simulator.fleet import FleetPlan
from simulator.results import SimResult, collect
from simulator.site import CloudSite, SiteResult

# A local Ray gets this much shared memory for objects: windows in flight are tens of MB
# and the final latency samples 8 bytes a frame; Ray spills to disk beyond it.
LOCAL_OBJECT_STORE_BYTES = 2 * 1024**3
# How long a cluster's GCS port may take to accept a connection before we say it does not
# answer: Ray itself would retry a dead address for minutes.
PROBE_TIMEOUT_S = 5.0


def init_local(attempts: int = 2, **options: Any) -> None:
    """``ray.init(address="local", **options)``: a new local Ray, started again if its
    first start fails.

    On a busy machine a new local Ray now and then never sees its raylet register within
    Ray's fixed 30 s grace period (seen once in CI: the raylet wrote no log at all, and
    the next start a minute later took 2 s). Ray then raises a bare ``Exception``; we
    shut the half-started node down and start afresh, up to ``attempts`` times.
    """
    import ray  # on first use: only Ray runs pay its import (~0.4 s)

    # "local": a new Ray even when RAY_ADDRESS or the address file of a `ray start` (live
    # or long dead) names a cluster, which ray.init(num_cpus=...) would refuse to join.
    options.setdefault("address", "local")
    for attempt in range(1, attempts + 1):
        try:
            ray.init(**options)
            return
        except Exception as exc:
            if "timed out during startup" not in str(exc) or attempt == attempts:
                raise
            logging.getLogger(__name__).warning(
                "local Ray did not start (%s); starting it again (%d of %d)",
                exc,
                attempt + 1,
                attempts,
            )
            ray.shutdown()


def cluster_address(address: str | None) -> tuple[str, str] | None:
    """The cluster to join and what named it, or None to start a local Ray.

    ``address`` (``--address``) first, then the ``RAY_ADDRESS`` environment variable;
    ``local`` (or neither) means a local Ray.
    """
    if address:
        return None if address == "local" else (address, f"--address {address}")
    env = os.environ.get("RAY_ADDRESS", "").strip()
    if env and env != "local":
        return env, f"RAY_ADDRESS={env}"
    return None


def _address_file() -> str:
    """Where ``ray start`` leaves its cluster's address (read by ``address="auto"``)."""
    try:
        from ray._common.utils import get_ray_address_file  # Ray >= 2.4x
    except ImportError:  # pragma: no cover - older Ray
        return "ray_current_cluster in Ray's temp dir"
    return str(get_ray_address_file(None))


def check_cluster(address: str, named_by: str, timeout_s: float = PROBE_TIMEOUT_S) -> None:
    """Raise :class:`EdgecutError` unless the cluster ``address`` resolves to (as
    ``ray.init`` resolves it: ``auto`` reads RAY_ADDRESS or the address file) accepts a
    connection within ``timeout_s``: Ray would retry a dead one for minutes."""
    if "://" in address:  # a Ray client address: ray.init reports its own errors
        return
    from ray._private import services  # the resolution ray.init itself uses

    try:
        resolved = services.canonicalize_bootstrap_address(address)
    except (ConnectionError, ValueError) as exc:
        raise EdgecutError(
            f"{named_by}: no Ray cluster to join ({exc}); start one with `ray start --head`, "
            "or leave --address out to run on a local Ray"
        ) from None
    if resolved is None:
        return
    if address == "auto" and not os.environ.get("RAY_ADDRESS", "").strip():
        named_by += f" (found in {_address_file()})"
    host, _, port = resolved.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s):
            pass
    except (OSError, ValueError) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise EdgecutError(
            f"{named_by}: the Ray cluster at {resolved} does not answer ({why}); is it "
            "stopped? Start one with `ray start --head`, or leave --address out (and unset "
            "RAY_ADDRESS) to run on a local Ray"
        ) from None


@contextlib.contextmanager
def ray_session(address: str | None = None, *, num_cpus: int | None = None) -> Iterator[Any]:
    """A connected Ray: the caller's, a cluster (:func:`cluster_address`), or a local one
    that we start and stop."""
    import ray  # lazily, as above

    if ray.is_initialized():
        yield ray
        return
    options: dict[str, Any] = {
        "include_dashboard": False,
        "logging_level": logging.WARNING,
        "log_to_driver": True,
        "configure_logging": True,
    }
    cluster = cluster_address(address)
    if cluster is None:
        init_local(
            address="local",
            num_cpus=num_cpus or os.cpu_count() or 1,
            object_store_memory=LOCAL_OBJECT_STORE_BYTES,
            **options,
        )
    else:
        target, named_by = cluster
        check_cluster(target, named_by)
        try:
            # Joining: the cluster's own CPUs and object store (ray.init refuses them).
            ray.init(address=target, **options)
        except ConnectionError as exc:
            raise EdgecutError(f"{named_by}: cannot connect to Ray: {exc}") from None
    try:
        yield ray
    finally:
        ray.shutdown()


class _ShardActor:
    def __init__(self, plan: FleetPlan, lo: int, hi: int) -> None:
        self.shard = CameraShard(plan, lo, hi)
        self.n_sites = len(plan.sites)

    def warm_up(self) -> float:
        return warm_up(self.shard.plan)

    def step(self, t_end: float) -> Any:
        batches = self.shard.step(t_end)
        # One return value per site (num_returns): a bare value when there is one site.
        if self.n_sites == 0:
            return 0
        return batches[0] if self.n_sites == 1 else tuple(batches)

    def finish(self) -> ShardResult:
        return self.shard.finish()


class _SiteActor:
    def __init__(self, plan: FleetPlan, index: int) -> None:
        self.site = CloudSite(plan, index)

    def warm_up(self) -> float:
        return warm_up(self.site.plan)

    def ingest(self, t_end: float, *batches: FrameBatch) -> int:
        # Ray hands arrays over read-only, which numba compiles apart from the writable
        # ones of the warm-up (and of a local run): the site works on writable copies.
        return self.site.ingest(t_end, [b.writable() for b in batches])

    def finish(self) -> SiteResult:
        return self.site.finish()


def simulate(
    plan: FleetPlan,
    *,
    shards: int | None = None,
    address: str | None = None,
    on_window: Progress | None = None,
    in_flight: int = 2,
) -> SimResult:
    """Simulate ``plan`` on Ray: ``shards`` camera actors (default: one per CPU) and one
    actor per cloud site."""
    with ray_session(address) as ray:
        warm_start = time.perf_counter()
        cpus = max(1.0, float(ray.cluster_resources().get("CPU", 1)))
        n_shards = len(plan.shard_ranges(shards or int(cpus)))
        n_sites = len(plan.sites)
        # Every actor must fit at once: on a small machine they share the CPUs.
        cpu_each = min(1.0, cpus / (n_shards + n_sites))
        shard_cls = ray.remote(_ShardActor).options(num_cpus=cpu_each)
        site_cls = ray.remote(_SiteActor).options(num_cpus=cpu_each)
        plan_ref = ray.put(plan)
        shards_ = [shard_cls.remote(plan_ref, lo, hi) for lo, hi in plan.shard_ranges(n_shards)]
        sites = [site_cls.remote(plan_ref, i) for i in range(n_sites)]
        # Every actor compiles (or loads) its kernels before the clock starts.
        ray.get([a.warm_up.remote() for a in [*shards_, *sites]])
        compile_s = time.perf_counter() - warm_start
        start = time.perf_counter()
        windows = plan.windows
        pending: list[list[Any]] = []
        done = 0

        def drain(keep: int) -> None:
            nonlocal done
            while len(pending) > keep:
                ray.get(pending.pop(0))
                done += 1
                if on_window is not None:
                    on_window(done, len(windows))

        for _, t_end in windows:
            sent = [a.step.options(num_returns=max(1, n_sites)).remote(t_end) for a in shards_]
            if n_sites == 0:
                pending.append(sent)
            elif n_sites == 1:
                pending.append([sites[0].ingest.remote(t_end, *sent)])
            else:
                pending.append(
                    [
                        site.ingest.remote(t_end, *[s[j] for s in sent])
                        for j, site in enumerate(sites)
                    ]
                )
            drain(in_flight)
        drain(0)
        shard_results = ray.get([a.finish.remote() for a in shards_])
        site_results = ray.get([s.finish.remote() for s in sites])
        result = collect(
            plan,
            shard_results,
            site_results,
            wall_s=time.perf_counter() - start,
            compile_s=compile_s,
            transport="ray",
        )
        for actor in [*shards_, *sites]:
            ray.kill(actor)
        return result


def map_plans(
    fn: Callable[[FleetPlan], Any],
    plans: list[FleetPlan],
    *,
    address: str | None = None,
    on_done: Progress | None = None,
) -> list[Any]:
    """``[fn(plan) for plan in plans]`` as Ray tasks (one CPU each), in input order."""
    with ray_session(address) as ray:
        cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
        task = ray.remote(num_cpus=1)(fn)
        refs: dict[Any, int] = {}
        results: list[Any] = [None] * len(plans)
        queue = list(enumerate(plans))
        finished = 0
        while queue or refs:
            # Keep a few tasks per CPU queued: enough to stay busy, few plans in memory.
            while queue and len(refs) < 2 * cpus:
                i, plan = queue.pop(0)
                refs[task.remote(plan)] = i
            ready, _ = ray.wait(list(refs), num_returns=1)
            for ref in ready:
                results[refs.pop(ref)] = ray.get(ref)
                finished += 1
                if on_done is not None:
                    on_done(finished, len(plans))
        return results
