"""Fleet scenarios: what to simulate, as frozen dataclasses loaded from YAML.

A scenario is a fleet of camera groups (how many, how often they capture, on which
device, which model, over which uplink, answering to which cloud site), the cloud sites
(servers, device, service-time model, batching), a split policy (its config,
:class:`~simulator.policies.PolicyConfig`, lives with the policies), a duration, a
deadline and a seed. :func:`load_scenario` validates a file once, before anything runs;
every error names the file and the field (``fleet[1].network.traces[0]``). Example
scenarios live in ``scenarios/``; ``docs/simulator.md`` lists every field.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar

import yaml

from partitioner.codecs import CODECS
from partitioner.errors import ConfigError, did_you_mean
from partitioner.pricing.network import NETWORKS, packaged_traces
from simulator.fields import FieldError, check_non_negative, check_one_of, check_positive
from simulator.policies import POLICIES, PolicyConfig

ARRIVALS = ("periodic", "poisson")
TRACE_ASSIGNMENTS = ("round-robin", "random")
TRACE_OFFSETS = ("random", "zero")
DISTRIBUTIONS = ("uniform", "lognormal")
SERVICE_MODELS = ("profile", "exponential")
# A frame captured while a camera's window is full waits or is skipped: the edge node's
# --late (edge_node.node.LATE_POLICIES; the simulator cannot import the edge node).
LATE_POLICIES = ("queue", "drop")
# RTT and radio energy model of uplinks given as a rate, a distribution or traces.
DEFAULT_RADIO = "lte"


@dataclass(frozen=True)
class DistributionConfig:
    """A constant uplink per camera, drawn once from a distribution (Mbit/s)."""

    kind: str
    min_mbps: float | None = None  # uniform
    max_mbps: float | None = None  # uniform
    median_mbps: float | None = None  # lognormal
    sigma: float | None = None  # lognormal: standard deviation of ln(rate)

    def __post_init__(self) -> None:
        check_one_of("kind", self.kind, DISTRIBUTIONS)
        if self.kind == "uniform":
            check_positive("min_mbps", self.min_mbps)
            check_positive("max_mbps", self.max_mbps)
            assert self.min_mbps is not None and self.max_mbps is not None
            if self.max_mbps < self.min_mbps:
                raise FieldError("max_mbps", f"must be >= min_mbps ({self.min_mbps})")
        else:
            check_positive("median_mbps", self.median_mbps)
            check_non_negative("sigma", self.sigma)

    @property
    def mean_mbps(self) -> float:
        if self.kind == "uniform":
            assert self.min_mbps is not None and self.max_mbps is not None
            return 0.5 * (self.min_mbps + self.max_mbps)
        assert self.median_mbps is not None and self.sigma is not None
        return self.median_mbps * math.exp(0.5 * self.sigma**2)


@dataclass(frozen=True)
class NetworkConfig:
    """A group's uplink: exactly one of ``preset``, ``mbps``, ``distribution``, ``traces``.

    ``traces`` are packaged trace names or files (made absolute by the loader), given to
    cameras round-robin or at random, each camera starting at a random point (or at 0).
    ``rtt_ms`` defaults to the preset's, else to that of the ``radio`` preset, which also
    gives the radio energy model (default ``lte``). ``downlink_mbps`` (default: none) adds
    the model output's transfer time to the way back.
    """

    preset: str | None = None
    mbps: float | None = None
    distribution: DistributionConfig | None = None
    traces: tuple[str, ...] = ()
    assign: str = "round-robin"
    offset: str = "random"
    rtt_ms: float | None = None
    downlink_mbps: float | None = None
    radio: str | None = None

    def __post_init__(self) -> None:
        given = [
            name
            for name, value in (
                ("preset", self.preset),
                ("mbps", self.mbps),
                ("distribution", self.distribution),
                ("traces", self.traces or None),
            )
            if value is not None
        ]
        if len(given) != 1:
            raise FieldError(
                "network",
                "give exactly one of preset, mbps, distribution, traces; got "
                + (", ".join(given) or "none"),
            )
        if self.preset is not None:
            check_one_of("preset", self.preset, list(NETWORKS))
        check_positive("mbps", self.mbps, allow_none=True)
        check_one_of("assign", self.assign, TRACE_ASSIGNMENTS)
        check_one_of("offset", self.offset, TRACE_OFFSETS)
        check_non_negative("rtt_ms", self.rtt_ms, allow_none=True)
        check_positive("downlink_mbps", self.downlink_mbps, allow_none=True)
        if self.radio is not None:
            check_one_of("radio", self.radio, list(NETWORKS))

    @property
    def kind(self) -> str:
        if self.traces:
            return "traces"
        if self.distribution is not None:
            return "distribution"
        return "constant"

    def profile_name(self) -> str:
        """The network preset that gives the RTT and radio model."""
        return self.preset or self.radio or DEFAULT_RADIO


@dataclass(frozen=True)
class GroupConfig:
    """A fleet group: ``count`` identical cameras."""

    name: str
    count: int
    fps: float
    network: NetworkConfig
    model: str = "resnet18"
    input_shape: tuple[int, ...] | None = None
    device: str = "rpi4"
    edge_dtype: str | None = None
    codec: str = "none"
    arrival: str = "periodic"
    start_jitter_s: float | None = None  # periodic: first frame uniform in [0, this); 1/fps
    site: str | None = None  # default: the first cloud site
    policy: PolicyConfig | None = None  # default: the scenario's
    edge_queue_limit: int | None = None  # frames in the edge processor; more are dropped
    # Frames in flight at most, head to hand-over, as the edge node's --window (1: stop-and-
    # wait). None, the default, is unbounded: the camera model of every earlier result.
    window: int | None = None
    late: str = "queue"  # a frame captured while the window is full: queue or drop

    def __post_init__(self) -> None:
        if not self.name:
            raise FieldError("name", "must be a non-empty string")
        if self.count < 1:
            raise FieldError("count", f"must be >= 1, got {self.count}")
        check_positive("fps", self.fps)
        check_one_of("arrival", self.arrival, ARRIVALS)
        check_non_negative("start_jitter_s", self.start_jitter_s, allow_none=True)
        if self.arrival == "poisson" and self.start_jitter_s is not None:
            raise FieldError(
                "start_jitter_s",
                "applies to periodic cameras only: a Poisson camera's frames are a "
                "stationary Poisson process from t = 0",
            )
        if self.input_shape is not None and not all(d > 0 for d in self.input_shape):
            raise FieldError("input_shape", f"must be positive integers, got {self.input_shape}")
        if self.edge_queue_limit is not None and self.edge_queue_limit < 1:
            raise FieldError("edge_queue_limit", f"must be >= 1, got {self.edge_queue_limit}")
        check_one_of("codec", self.codec, [c.name for c in CODECS.list()])
        if self.window is not None and self.window < 1:
            raise FieldError(
                "window", f"must be an integer >= 1 (frames in flight), got {self.window}"
            )
        check_one_of("late", self.late, LATE_POLICIES)
        if self.late == "drop" and self.window is None:
            raise FieldError("late", "drop skips frames that find the window full: give a window")
        if self.window is not None and self.edge_queue_limit is not None:
            raise FieldError(
                "window", "bounds the camera's frames as edge_queue_limit does: give one of them"
            )

    @property
    def jitter_s(self) -> float:
        return 1.0 / self.fps if self.start_jitter_s is None else self.start_jitter_s


@dataclass(frozen=True)
class BatchingConfig:
    """Dynamic batching of a cloud site (rule: simulator.queues module docstring)."""

    max_batch: int = 1
    window_ms: float = 0.0

    def __post_init__(self) -> None:
        if self.max_batch < 1:
            raise FieldError("max_batch", f"must be >= 1, got {self.max_batch}")
        check_non_negative("window_ms", self.window_ms)


@dataclass(frozen=True)
class SiteConfig:
    """A cloud site: ``servers`` identical servers of one device preset."""

    name: str
    servers: int = 1
    device: str = "x86-server"
    dtype: str | None = None
    service: str = "profile"  # or exponential: the profile's time times an Exp(1) draw
    batching: BatchingConfig = field(default_factory=BatchingConfig)

    def __post_init__(self) -> None:
        if not self.name:
            raise FieldError("name", "must be a non-empty string")
        if self.servers < 1:
            raise FieldError("servers", f"must be >= 1, got {self.servers}")
        check_one_of("service", self.service, SERVICE_MODELS)


@dataclass(frozen=True)
class Scenario:
    name: str
    duration_s: float
    fleet: tuple[GroupConfig, ...]
    policy: PolicyConfig
    cloud: tuple[SiteConfig, ...] = ()
    deadline_ms: float = 1000.0
    seed: int = 0
    window_s: float | None = None  # simulated seconds per window; default: auto
    timeline_bins: int = 60  # bins of the cloud utilisation and queue timelines
    source: str = "<scenario>"  # the file it came from

    def __post_init__(self) -> None:
        check_positive("duration_s", self.duration_s)
        check_positive("deadline_ms", self.deadline_ms)
        if not 0 <= self.seed < 1 << 64:
            raise FieldError("seed", f"must be an integer in [0, 2**64), got {self.seed}")
        check_positive("window_s", self.window_s, allow_none=True)
        if self.timeline_bins < 1:
            raise FieldError("timeline_bins", f"must be >= 1, got {self.timeline_bins}")
        if not self.fleet:
            raise FieldError("fleet", "needs at least one group")
        _unique("fleet", [g.name for g in self.fleet])
        _unique("cloud", [s.name for s in self.cloud])
        sites = [s.name for s in self.cloud]
        for i, group in enumerate(self.fleet):
            if group.site is not None and group.site not in sites:
                raise FieldError(
                    f"fleet[{i}].site",
                    f"no cloud site {group.site!r}; sites: {', '.join(sites) or 'none'}"
                    f"{did_you_mean(group.site, sites)}",
                )
            if not sites and self.policy_of(group).name != "edge-only":
                raise FieldError(
                    f"fleet[{i}]", "its policy offloads to the cloud but the scenario has no cloud"
                )

    def policy_of(self, group: GroupConfig) -> PolicyConfig:
        return group.policy or self.policy

    def site_index(self, group: GroupConfig) -> int:
        """Index of the group's cloud site (-1: none)."""
        if not self.cloud:
            return -1
        names = [s.name for s in self.cloud]
        return names.index(group.site) if group.site is not None else 0

    @property
    def cameras(self) -> int:
        return sum(g.count for g in self.fleet)


def _unique(name: str, names: list[str]) -> None:
    seen: set[str] = set()
    for i, n in enumerate(names):
        if n in seen:
            raise FieldError(f"{name}[{i}].name", f"duplicate name {n!r}")
        seen.add(n)


# ----------------------------------------------------------------------------- loading


class _At:
    """Where a value sits: the file and the field path, for error messages."""

    def __init__(self, source: str, path: str) -> None:
        self.source = source
        self.path = path

    def child(self, key: str | int) -> _At:
        if isinstance(key, int):
            return _At(self.source, f"{self.path}[{key}]")
        return _At(self.source, f"{self.path}.{key}" if self.path else key)

    def error(self, message: str) -> ConfigError:
        where = f"{self.path}: " if self.path else ""
        return ConfigError(f"{self.source}: {where}{message}")


T = TypeVar("T")


def _build(cls: Callable[..., T], at: _At, **kwargs: Any) -> T:
    """Construct a config dataclass; its FieldError becomes a ConfigError with the path."""
    try:
        return cls(**kwargs)
    except FieldError as exc:
        # Scenario-level errors already carry a full path ("fleet[0].site").
        raise at.child(exc.field_name).error(exc.message) from None


def _mapping(value: Any, at: _At, allowed: Iterable[str], required: Iterable[str] = ()) -> dict:
    if not isinstance(value, Mapping):
        raise at.error(f"expected a mapping of fields, got {_describe(value)}")
    allowed = list(allowed)
    for key in value:
        if not isinstance(key, str) or key not in allowed:
            raise at.child(str(key)).error(
                f"unknown field{did_you_mean(str(key), allowed)} (expected: {', '.join(allowed)})"
            )
    for key in required:
        if key not in value:
            raise at.child(key).error("is required")
    return dict(value)


def _describe(value: Any) -> str:
    return f"{type(value).__name__} {value!r}" if value is not None else "nothing"


def _number(value: Any, at: _At) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise at.error(f"expected a number, got {_describe(value)}")
    return float(value)


def _integer(value: Any, at: _At) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise at.error(f"expected an integer, got {_describe(value)}")
    return value


def _string(value: Any, at: _At) -> str:
    if not isinstance(value, str):
        raise at.error(f"expected a string, got {_describe(value)}")
    return value


def _list(value: Any, at: _At) -> list:
    if not isinstance(value, list):
        raise at.error(f"expected a list, got {_describe(value)}")
    return value


def _opt(data: dict, key: str, convert: Callable[[Any, _At], Any], at: _At) -> dict:
    """``{key: convert(data[key])}`` when the key is present, else ``{}``."""
    if key not in data or data[key] is None:
        return {}
    return {key: convert(data[key], at.child(key))}


def _fields_of(cls: type) -> list[str]:
    return [f.name for f in fields(cls)]


def _policy(data: Any, at: _At) -> PolicyConfig:
    if isinstance(data, str):
        data = {"name": data}
    raw = _mapping(data, at, _fields_of(PolicyConfig), required=["name"])
    name = _string(raw["name"], at.child("name"))
    if name in POLICIES:  # parameters of another policy are a mistake, not a no-op
        allowed = ["name", *POLICIES.get(name).params]
        _mapping(raw, at, allowed)
    kwargs: dict[str, Any] = {"name": name}
    kwargs |= _opt(raw, "cut_after", _string, at)
    kwargs |= _opt(raw, "objective", _string, at)
    for key in ("bandwidth_mbps", "lag_s", "sample_s", "alpha", "min_mbps", "max_mbps"):
        kwargs |= _opt(raw, key, _number, at)
    return _build(PolicyConfig, at, **kwargs)


def _distribution(data: Any, at: _At) -> DistributionConfig:
    raw = _mapping(data, at, _fields_of(DistributionConfig), required=["kind"])
    kwargs: dict[str, Any] = {"kind": _string(raw["kind"], at.child("kind"))}
    for key in ("min_mbps", "max_mbps", "median_mbps", "sigma"):
        kwargs |= _opt(raw, key, _number, at)
    return _build(DistributionConfig, at, **kwargs)


def _traces(data: Any, at: _At, base_dir: Path | None) -> tuple[str, ...]:
    names = [data] if isinstance(data, str) else _list(data, at)
    if not names:
        raise at.error("needs at least one trace")
    packaged = packaged_traces()
    out = []
    for i, item in enumerate(names):
        item_at = at.child(i) if not isinstance(data, str) else at
        spec = _string(item, item_at)
        if spec in packaged:
            out.append(spec)
            continue
        path = Path(spec).expanduser()
        if not path.is_absolute() and base_dir is not None:
            path = base_dir / path
        if not path.is_file():
            raise item_at.error(
                f"no such trace file {spec!r} (looked at {path}) and not a packaged trace "
                f"({', '.join(packaged)}){did_you_mean(spec, packaged)}"
            )
        out.append(str(path.resolve()))
    return tuple(out)


def _network(data: Any, at: _At, base_dir: Path | None) -> NetworkConfig:
    if isinstance(data, str):
        data = {"preset": data}
    raw = _mapping(data, at, _fields_of(NetworkConfig))
    kwargs: dict[str, Any] = {}
    for key in ("preset", "assign", "offset", "radio"):
        kwargs |= _opt(raw, key, _string, at)
    for key in ("mbps", "rtt_ms", "downlink_mbps"):
        kwargs |= _opt(raw, key, _number, at)
    if raw.get("distribution") is not None:
        kwargs["distribution"] = _distribution(raw["distribution"], at.child("distribution"))
    if raw.get("traces") is not None:
        kwargs["traces"] = _traces(raw["traces"], at.child("traces"), base_dir)
    return _build(NetworkConfig, at, **kwargs)


def _shape(value: Any, at: _At) -> tuple[int, ...]:
    if isinstance(value, str):
        parts = [p for p in value.replace("x", ",").split(",") if p.strip()]
        try:
            return tuple(int(p) for p in parts)
        except ValueError:
            raise at.error(f"expected integers such as [1, 3, 224, 224], got {value!r}") from None
    return tuple(_integer(v, at.child(i)) for i, v in enumerate(_list(value, at)))


def _group(data: Any, at: _At, base_dir: Path | None) -> GroupConfig:
    raw = _mapping(data, at, _fields_of(GroupConfig), required=["name", "count", "fps", "network"])
    kwargs: dict[str, Any] = {
        "name": _string(raw["name"], at.child("name")),
        "count": _integer(raw["count"], at.child("count")),
        "fps": _number(raw["fps"], at.child("fps")),
        "network": _network(raw["network"], at.child("network"), base_dir),
    }
    for key in ("device", "edge_dtype", "codec", "arrival", "site"):
        kwargs |= _opt(raw, key, _string, at)
    kwargs |= _opt(raw, "start_jitter_s", _number, at)
    kwargs |= _opt(raw, "edge_queue_limit", _integer, at)
    kwargs |= _opt(raw, "window", _integer, at)
    kwargs |= _opt(raw, "late", _string, at)
    kwargs |= _opt(raw, "input_shape", _shape, at)
    if raw.get("model") is not None:
        model = _string(raw["model"], at.child("model"))
        kwargs["model"] = _model_spec(model, base_dir)
    if raw.get("policy") is not None:
        kwargs["policy"] = _policy(raw["policy"], at.child("policy"))
    return _build(GroupConfig, at, **kwargs)


def _model_spec(spec: str, base_dir: Path | None) -> str:
    """``path/to/file.py:factory`` relative to the scenario file becomes absolute."""
    target, sep, factory = spec.rpartition(":")
    if sep and target.endswith(".py") and base_dir is not None:
        path = Path(target).expanduser()
        if not path.is_absolute() and (base_dir / path).is_file():
            return f"{(base_dir / path).resolve()}:{factory}"
    return spec


def _batching(data: Any, at: _At) -> BatchingConfig:
    raw = _mapping(data, at, _fields_of(BatchingConfig))
    kwargs: dict[str, Any] = {}
    kwargs |= _opt(raw, "max_batch", _integer, at)
    kwargs |= _opt(raw, "window_ms", _number, at)
    return _build(BatchingConfig, at, **kwargs)


def _site(data: Any, at: _At) -> SiteConfig:
    raw = _mapping(data, at, _fields_of(SiteConfig), required=["name"])
    kwargs: dict[str, Any] = {"name": _string(raw["name"], at.child("name"))}
    kwargs |= _opt(raw, "servers", _integer, at)
    for key in ("device", "dtype", "service"):
        kwargs |= _opt(raw, key, _string, at)
    if raw.get("batching") is not None:
        kwargs["batching"] = _batching(raw["batching"], at.child("batching"))
    return _build(SiteConfig, at, **kwargs)


def scenario_from_dict(
    data: Any, *, source: str = "<scenario>", base_dir: str | Path | None = None
) -> Scenario:
    """Validate a parsed scenario (the YAML's top-level mapping)."""
    at = _At(source, "")
    allowed = [f for f in _fields_of(Scenario) if f != "source"]
    raw = _mapping(data, at, allowed, required=["name", "duration_s", "fleet", "policy"])
    base = Path(base_dir) if base_dir is not None else None
    fleet_at = at.child("fleet")
    fleet = tuple(
        _group(g, fleet_at.child(i), base) for i, g in enumerate(_list(raw["fleet"], fleet_at))
    )
    cloud_at = at.child("cloud")
    cloud = tuple(
        _site(s, cloud_at.child(i)) for i, s in enumerate(_list(raw.get("cloud") or [], cloud_at))
    )
    kwargs: dict[str, Any] = {
        "name": _string(raw["name"], at.child("name")),
        "duration_s": _number(raw["duration_s"], at.child("duration_s")),
        "fleet": fleet,
        "cloud": cloud,
        "policy": _policy(raw["policy"], at.child("policy")),
        "source": source,
    }
    kwargs |= _opt(raw, "deadline_ms", _number, at)
    kwargs |= _opt(raw, "seed", _integer, at)
    kwargs |= _opt(raw, "timeline_bins", _integer, at)
    if raw.get("window_s") not in (None, "auto"):
        kwargs["window_s"] = _number(raw["window_s"], at.child("window_s"))
    return _build(Scenario, at, **kwargs)


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a scenario file; raises ConfigError naming the file and field."""
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the scenario: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {' '.join(str(exc).split())}") from None
    return scenario_from_dict(data, source=str(path), base_dir=p.resolve().parent)
