"""Split policies: which cut each frame of a camera uses.

A policy is compiled once per group (:meth:`Policy.compile`: the cuts it may use, from
the group's :class:`~simulator.cuts.GroupModel`) and then chooses an option per frame in
the simulator core (:meth:`Policy.choose`: numpy and numba, never torch). Policies live in a registry
(:func:`register_policy`, :data:`POLICIES`); a scenario names one and gives its
parameters as a :class:`PolicyConfig`.

``adaptive`` mimics an edge node that re-plans by the breakpoint table: its bandwidth
estimate for a frame captured at ``t`` is an EWMA (weight ``alpha`` on the newest sample)
over the frames of the camera, each sample being the capacity its uplink offered during
``[t - lag_s - sample_s, t - lag_s]`` (what a probe that kept the link busy would have
measured, reported ``lag_s`` late). The estimate depends on the trace, not on the
camera's own traffic, so it is computed for all frames at once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
from numba import njit
from numpy.typing import NDArray

from partitioner.registry import Registry
from simulator.cuts import GroupModel
from simulator.fields import FieldError, check_non_negative, check_one_of, check_positive

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
OptionArray = NDArray[np.int16]

# The planner's objectives that a breakpoint table can hold (throughput is not linear in
# 1 / bandwidth, so partitioner.solve.breakpoints refuses it).
OBJECTIVES = ("latency", "energy")


@dataclass(frozen=True)
class PolicyConfig:
    """Which cut each frame uses: a registered policy's ``name`` and its parameters."""

    name: str
    cut_after: str | None = None  # fixed: this node and its predecessors run on the edge
    bandwidth_mbps: float | None = None  # planned: plan for this uplink (default: the mean)
    objective: str = "latency"  # adaptive, planned
    lag_s: float = 1.0  # adaptive: the estimate is this old
    sample_s: float = 1.0  # adaptive: each sample averages the capacity over this long
    alpha: float = 0.3  # adaptive: EWMA weight of the newest sample
    min_mbps: float = 0.05  # adaptive: range of the breakpoint table
    max_mbps: float = 1000.0

    def __post_init__(self) -> None:
        check_one_of("name", self.name, list(POLICIES))
        if self.name == "fixed" and not self.cut_after:
            raise FieldError("cut_after", "policy fixed needs cut_after: NODE (a node name)")
        check_positive("bandwidth_mbps", self.bandwidth_mbps, allow_none=True)
        check_one_of("objective", self.objective, OBJECTIVES)
        check_non_negative("lag_s", self.lag_s)
        check_positive("sample_s", self.sample_s)
        if not 0 < self.alpha <= 1:
            raise FieldError("alpha", f"must be in (0, 1], got {self.alpha}")
        check_positive("min_mbps", self.min_mbps)
        check_positive("max_mbps", self.max_mbps)
        if not self.max_mbps > self.min_mbps:
            raise FieldError("max_mbps", f"must be > min_mbps ({self.min_mbps})")


@dataclass(frozen=True, eq=False)
class CompiledPolicy:
    """A policy bound to one group: its cut options and numbers (no torch, picklable)."""

    name: str
    cuts: tuple[frozenset[str], ...]  # option i of the group
    lows_mbps: FloatArray = field(default_factory=lambda: np.zeros(1))  # adaptive ranges
    alpha: float = 1.0
    lag_s: float = 0.0
    sample_s: float = 1.0


@dataclass
class FrameContext:
    """What a policy sees of one window's frames of a block of cameras (CSR by camera)."""

    t_s: FloatArray  # capture times, camera-major
    row_ptr: IntArray  # frames of camera c: row_ptr[c]:row_ptr[c + 1]
    capacity_mbps: Callable[[FloatArray, float], FloatArray]  # mean over [t - span, t], per frame
    state: FloatArray  # per camera, carried across windows (nan: no estimate yet)


class Policy:
    name: ClassVar[str]
    params: ClassVar[tuple[str, ...]] = ()
    description: ClassVar[str] = ""

    def compile(self, config: PolicyConfig, model: GroupModel) -> CompiledPolicy:
        raise NotImplementedError

    def choose(self, policy: CompiledPolicy, frames: FrameContext) -> OptionArray:
        """Option index per frame; the default uses option 0 throughout."""
        return np.zeros(frames.t_s.shape[0], dtype=np.int16)


POLICIES: Registry[Policy] = Registry("policy")


def register_policy(cls: type[Policy]) -> type[Policy]:
    """Class decorator: register one instance of a policy class under its ``name``."""
    POLICIES.register(cls())
    return cls


@register_policy
class EdgeOnly(Policy):
    name = "edge-only"
    description = "the whole model on the camera"

    def compile(self, config: PolicyConfig, model: GroupModel) -> CompiledPolicy:
        return CompiledPolicy(self.name, (model.edge_only(),))


@register_policy
class CloudOnly(Policy):
    name = "cloud-only"
    description = "send the input, run the whole model in the cloud"

    def compile(self, config: PolicyConfig, model: GroupModel) -> CompiledPolicy:
        return CompiledPolicy(self.name, (model.cloud_only(),))


@register_policy
class Fixed(Policy):
    name = "fixed"
    params = ("cut_after",)
    description = "cut_after NODE: that node and its predecessors on the camera"

    def compile(self, config: PolicyConfig, model: GroupModel) -> CompiledPolicy:
        assert config.cut_after is not None
        return CompiledPolicy(self.name, (model.cut_after(config.cut_after),))


@register_policy
class Planned(Policy):
    name = "planned"
    params = ("bandwidth_mbps", "objective")
    description = "the planner's cut for the group's mean uplink (or bandwidth_mbps), fixed"

    def compile(self, config: PolicyConfig, model: GroupModel) -> CompiledPolicy:
        bw = config.bandwidth_mbps or model.cost.network.uplink_mbps
        return CompiledPolicy(self.name, (model.best_cut(bw, config.objective),))


@register_policy
class Adaptive(Policy):
    name = "adaptive"
    params = ("objective", "lag_s", "sample_s", "alpha", "min_mbps", "max_mbps")
    description = "breakpoint-table lookup of a lagged, smoothed bandwidth estimate"

    def compile(self, config: PolicyConfig, model: GroupModel) -> CompiledPolicy:
        table = model.table(config.min_mbps, config.max_mbps, config.objective)
        cuts = tuple(frozenset(e.edge_nodes) for e in table.entries)
        lows = np.array([e.min_mbps for e in table.entries], dtype=np.float64)
        return CompiledPolicy(self.name, cuts, lows, config.alpha, config.lag_s, config.sample_s)

    def choose(self, policy: CompiledPolicy, frames: FrameContext) -> OptionArray:
        if len(policy.cuts) == 1:
            return np.zeros(frames.t_s.shape[0], dtype=np.int16)
        sample = frames.capacity_mbps(frames.t_s - policy.lag_s, policy.sample_s)
        estimate = ewma_rows(sample, frames.row_ptr, policy.alpha, frames.state)
        # As BreakpointTable.lookup: the entry whose range holds the estimate, clamped.
        idx = np.searchsorted(policy.lows_mbps, estimate, side="right") - 1
        np.clip(idx, 0, len(policy.cuts) - 1, out=idx)
        return idx.astype(np.int16)


@njit(cache=True)
def ewma_rows(
    x: FloatArray, row_ptr: IntArray, alpha: float, state: FloatArray
) -> FloatArray:  # pragma: no cover - numba
    """``y[i] = alpha * x[i] + (1 - alpha) * y[i - 1]`` per row, from the carried ``state``
    (nan: start at the first sample); ``state`` is updated to each row's last value."""
    out = np.empty_like(x)
    for r in range(row_ptr.shape[0] - 1):
        y = state[r]
        for i in range(row_ptr[r], row_ptr[r + 1]):
            y = x[i] if np.isnan(y) else alpha * x[i] + (1.0 - alpha) * y
            out[i] = y
        state[r] = y
    return out
