"""Compression configs: frozen dataclasses validated on construction, loaded from YAML.

A config file holds the settings every method shares and one section per method::

    method: prune            # what `edgecut compress` runs (--method overrides it)
    seed: 0
    codec: int8+zstd         # feature codec for the crossing tensors (default: the plan's)
    data: auto               # auto | digits | synthetic | path/to/data.npz
    prune:
      ratio: 0.5
      train: {epochs: 10, lr: 0.002}
    mixed:
      steps: [{prune: {ratio: 0.5}}, {distill: {student: self}}, int8]

Every value is checked where it enters; an error names the file and the field,
what was expected and what arrived. ``edgecut plan --compress auto`` reads the same
file: each method it tries runs with its section.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from partitioner.errors import ConfigError, EdgecutError, did_you_mean


class FieldError(ConfigError):
    """One bad field; the loader puts the file and section in front of its name."""

    def __init__(
        self, owner: str, name: str, expected: str, got: object, detail: str | None = None
    ) -> None:
        self.owner, self.name = owner, name
        self.detail = detail or f"expected {expected}, got {got!r}"
        super().__init__(f"{owner}.{name}: {self.detail}")


def _named(obj: object, name: str, lookup: Any) -> None:
    """Resolve a registry name now, so that a typo is reported as this field's error."""
    try:
        lookup(getattr(obj, name))
    except EdgecutError as exc:
        raise FieldError(type(obj).__name__, name, "", None, detail=str(exc)) from None


def _int(obj: object, name: str, low: int, *, optional: bool = False) -> None:
    value = getattr(obj, name)
    if optional and value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise FieldError(type(obj).__name__, name, f"an int >= {low}", value)


def _float(
    obj: object,
    name: str,
    low: float,
    high: float = math.inf,
    *,
    low_open: bool = False,
    high_open: bool = False,
    optional: bool = False,
) -> None:
    value = getattr(obj, name)
    if optional and value is None:
        return
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if ok:
        ok = (value > low if low_open else value >= low) and (
            value < high if high_open else value <= high
        )
    if not ok:
        lo, hi = ("(" if low_open else "["), (")" if high_open else "]")
        span = f"in {lo}{low:g}, {high:g}{hi}" if math.isfinite(high) else f">= {low:g}"
        if low_open and not math.isfinite(high):
            span = f"> {low:g}"
        raise FieldError(type(obj).__name__, name, f"a number {span}", value)


def _choice(obj: object, name: str, choices: tuple[str, ...]) -> None:
    value = getattr(obj, name)
    if value not in choices:
        raise FieldError(
            type(obj).__name__,
            name,
            f"one of {', '.join(choices)}"
            + (did_you_mean(value, choices) if isinstance(value, str) else ""),
            value,
        )


@dataclass(frozen=True)
class TrainConfig:
    """The short training that recovers accuracy: distillation through the frozen tail.

    loss = hint_weight * MSE(student cut, teacher cut) / Var(teacher cut)
         + soft_weight * T^2 * KL(teacher logits / T || student logits / T)
         + label_weight * cross-entropy(student logits, labels)
    """

    epochs: int = 8
    lr: float = 2e-3
    batch_size: int = 64
    weight_decay: float = 1e-4
    hint_weight: float = 1.0
    soft_weight: float = 1.0
    label_weight: float = 1.0
    temperature: float = 4.0

    def __post_init__(self) -> None:
        _int(self, "epochs", 0)
        _float(self, "lr", 0.0, low_open=True)
        _int(self, "batch_size", 1)
        _float(self, "weight_decay", 0.0)
        for name in ("hint_weight", "soft_weight", "label_weight"):
            _float(self, name, 0.0)
        _float(self, "temperature", 0.0, low_open=True)
        if self.epochs and not (self.hint_weight or self.soft_weight or self.label_weight):
            raise FieldError(
                "TrainConfig", "hint_weight", "at least one loss weight > 0", self.hint_weight
            )


@dataclass(frozen=True)
class Int8Config:
    """Post-training int8 quantization with PT2E (torchao), calibrated on real samples."""

    backend: str = "x86"  # x86: X86InductorQuantizer; arm: ArmInductorQuantizer (symmetric)
    calibration_samples: int = 256

    def __post_init__(self) -> None:
        _choice(self, "backend", ("x86", "arm"))
        _int(self, "calibration_samples", 1)


@dataclass(frozen=True)
class PruneConfig:
    """Structured pruning: remove ``ratio`` of the channels of every prunable layer group."""

    ratio: float = 0.5
    importance: str = "l2"  # how channels are ranked: weight magnitude (l1/l2), fpgm, lamp
    round_to: int | None = None  # keep channel counts multiples of this (SIMD-friendly)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=10))

    def __post_init__(self) -> None:
        _float(self, "ratio", 0.0, 1.0, low_open=True, high_open=True)
        _choice(self, "importance", ("l1", "l2", "fpgm", "lamp"))
        _int(self, "round_to", 1, optional=True)


@dataclass(frozen=True)
class LowRankConfig:
    """Low-rank factorisation of convolutions and linear layers, then a short fine-tune.

    Each layer keeps the fewest singular directions holding ``energy`` of its squared
    singular values, and is factorised only where that saves FLOPs. With
    ``accuracy_budget`` (points) the energy is instead the lowest of ``energies`` whose
    factorised and fine-tuned head loses at most that much validation accuracy
    (bisected: about log2(len(energies)) + 1 fine-tunes).
    """

    decomposition: str = "svd"  # svd: k x k conv -> k x k (rank r) + 1x1; tucker2: 1x1, k x k, 1x1
    # Trained convolutions spread their energy widely: on digits_cnn 0.9 keeps 49 of 64
    # and 93 of 128 directions (1.1x fewer FLOPs); 0.6 keeps 24 and 42 (2.3x).
    energy: float = 0.6
    accuracy_budget: float | None = None
    energies: tuple[float, ...] = (0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 0.98)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=10))

    def __post_init__(self) -> None:
        _choice(self, "decomposition", ("svd", "tucker2"))
        _float(self, "energy", 0.0, 1.0, low_open=True)
        _float(self, "accuracy_budget", 0.0, optional=True)
        if not isinstance(self.energies, (tuple, list)) or not self.energies:
            raise FieldError("LowRankConfig", "energies", "a non-empty list", self.energies)
        object.__setattr__(self, "energies", tuple(self.energies))
        for e in self.energies:
            if isinstance(e, bool) or not isinstance(e, (int, float)) or not 0 < e <= 1:
                raise FieldError("LowRankConfig", "energies", "numbers in (0, 1]", e)


@dataclass(frozen=True)
class DistillConfig:
    """Knowledge distillation into a student head; the tail is frozen and unchanged.

    ``student``: ``auto`` builds a lightweight student from the head (internal widths
    times ``width``, k x k convolutions made depthwise-separable); ``self`` trains the
    current head (recovery after pruning in a pipeline); or a model spec
    (``pkg.module:factory`` / ``path.py:factory``) whose outputs match the cut.
    """

    student: str = "auto"
    width: float = 0.5
    depthwise: bool = True
    min_depthwise_channels: int = 8  # narrower convs stay dense (depthwise saves little there)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=30, lr=3e-3))

    def __post_init__(self) -> None:
        if not isinstance(self.student, str) or not self.student.strip():
            raise FieldError(
                "DistillConfig", "student", "auto, self or pkg.module:factory", self.student
            )
        if self.student not in ("auto", "self") and ":" not in self.student:
            raise FieldError(
                "DistillConfig",
                "student",
                "auto, self, pkg.module:factory or path/to/file.py:factory",
                self.student,
            )
        _float(self, "width", 0.0, 1.0, low_open=True)
        if not isinstance(self.depthwise, bool):
            raise FieldError("DistillConfig", "depthwise", "true or false", self.depthwise)
        _int(self, "min_depthwise_channels", 1)


@dataclass(frozen=True)
class Step:
    """One stage of a mixed pipeline: a method and its config."""

    method: str
    config: Any


def _default_steps() -> tuple[Step, ...]:
    return (
        Step("prune", PruneConfig(train=TrainConfig(epochs=0))),
        Step("distill", DistillConfig(student="self", train=TrainConfig(epochs=12))),
        Step("int8", Int8Config()),
    )


@dataclass(frozen=True)
class MixedConfig:
    """Several methods in order, e.g. prune -> distill (into the pruned head) -> int8."""

    steps: tuple[Step, ...] = field(default_factory=_default_steps)

    def __post_init__(self) -> None:
        from partitioner.compress.registry import METHODS

        if not isinstance(self.steps, tuple) or not self.steps:
            raise FieldError("MixedConfig", "steps", "a non-empty list of methods", self.steps)
        for i, step in enumerate(self.steps):
            if step.method == "mixed":
                raise FieldError("MixedConfig", f"steps[{i}]", "a method other than mixed", "mixed")
            _named(step, "method", METHODS.get)
            method = METHODS.get(step.method)
            if method.terminal and i != len(self.steps) - 1:
                raise FieldError(
                    "MixedConfig",
                    f"steps[{i}]",
                    f"{step.method} last (its int8 graph cannot be compressed further)",
                    step.method,
                )
            if not isinstance(step.config, method.config_type):
                raise FieldError(
                    "MixedConfig", f"steps[{i}]", method.config_type.__name__, step.config
                )


@dataclass(frozen=True)
class CompressConfig:
    """Everything `edgecut compress` and `edgecut plan --compress` need besides the model."""

    method: str | None = None
    seed: int = 0
    codec: str | None = None  # feature codec for the crossing tensors; None: the plan's
    data: str = "auto"
    train_samples: int | None = None  # cap on training/calibration samples
    eval_samples: int | None = None  # cap on validation and test samples
    timing_repeats: int = 20  # forward passes timed per head (median reported)
    sections: Mapping[str, Any] = field(default_factory=dict)  # method name -> its config

    def __post_init__(self) -> None:
        from partitioner.codecs import CODECS
        from partitioner.compress.registry import METHODS

        if self.method is not None:
            _named(self, "method", METHODS.get)
        _int(self, "seed", 0)
        if self.codec is not None:
            if not isinstance(self.codec, str):
                raise FieldError("CompressConfig", "codec", "a codec name", self.codec)
            _named(self, "codec", CODECS.get)
        if not isinstance(self.data, str) or not self.data:
            raise FieldError(
                "CompressConfig", "data", "auto, digits, synthetic or a .npz path", self.data
            )
        _int(self, "train_samples", 1, optional=True)
        _int(self, "eval_samples", 1, optional=True)
        _int(self, "timing_repeats", 1)
        for name, section in self.sections.items():
            expected = METHODS.get(name).config_type
            if not isinstance(section, expected):
                raise FieldError("CompressConfig", name, expected.__name__, section)

    def for_method(self, name: str) -> Any:
        """The config of method ``name``: its section, else the method's defaults."""
        from partitioner.compress.registry import METHODS

        method = METHODS.get(name)
        return self.sections.get(name) or method.config_type()

    def with_method(self, name: str | None) -> CompressConfig:
        return dataclasses.replace(self, method=name)


# -- loading -------------------------------------------------------------------------------


def _nested_type(cls: type, name: str) -> type | None:
    if name == "train" and cls in (PruneConfig, LowRankConfig, DistillConfig):
        return TrainConfig
    return None


def build(cls: type, data: object, where: str) -> Any:
    """``cls(**data)`` for a mapping read from YAML, with errors that say where."""
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: expected a mapping of fields, got {_describe(data)}")
    known = [f.name for f in fields(cls) if f.init]
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        if key not in known:
            raise ConfigError(
                f"{where}: unknown field {key!r}: expected one of {', '.join(known)}"
                f"{did_you_mean(str(key), known)}"
            )
        nested = _nested_type(cls, key)
        if nested is not None:
            value = build(nested, value, f"{where}.{key}")
        elif cls is MixedConfig and key == "steps":
            value = _steps(value, f"{where}.steps")
        elif isinstance(value, list):
            value = tuple(value)
        kwargs[key] = value
    try:
        return cls(**kwargs)
    except FieldError as exc:
        raise ConfigError(f"{where}.{exc.name}: {exc.detail}") from None
    except TypeError as exc:  # a value of a type no check anticipated
        raise ConfigError(f"{where}: {exc}") from None


def _steps(data: object, where: str) -> tuple[Step, ...]:
    from partitioner.compress.registry import METHODS

    if not isinstance(data, list) or not data:
        raise ConfigError(
            f"{where}: expected a non-empty list such as [{{prune: {{ratio: 0.5}}}}, int8], "
            f"got {_describe(data)}"
        )
    steps = []
    body: object
    for i, item in enumerate(data):
        if isinstance(item, str):
            name, body = item, {}
        elif isinstance(item, Mapping) and len(item) == 1:
            ((name, body),) = item.items()
        else:
            raise ConfigError(
                f"{where}[{i}]: expected a method name or {{method: {{fields}}}}, got "
                f"{_describe(item)}"
            )
        try:
            method = METHODS.get(str(name))
        except EdgecutError as exc:
            raise ConfigError(f"{where}[{i}]: {exc}") from None
        steps.append(Step(method.name, build(method.config_type, body, f"{where}[{i}].{name}")))
    return tuple(steps)


def _describe(value: object) -> str:
    return f"{type(value).__name__} {value!r}"[:120]


def config_from_dict(data: object, source: str = "config") -> CompressConfig:
    """A :class:`CompressConfig` from a parsed YAML document; errors name ``source``."""
    from partitioner.compress.registry import METHODS

    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"{source}: expected a mapping at the top level, got {_describe(data)}")
    method_names = [m.name for m in METHODS.list()]
    common = {f.name for f in fields(CompressConfig)} - {"sections"}
    sections: dict[str, Any] = {}
    top: dict[str, Any] = {}
    for key, value in data.items():
        key = str(key)
        if key in method_names:
            sections[key] = build(METHODS.get(key).config_type, value, f"{source}: {key}")
        elif key in common:
            top[key] = value
        else:
            known = sorted(common | set(method_names))
            raise ConfigError(
                f"{source}: unknown field {key!r}: expected one of {', '.join(known)}"
                f"{did_you_mean(key, known)}"
            )
    try:
        return CompressConfig(**top, sections=sections)
    except FieldError as exc:
        raise ConfigError(f"{source}: {exc.name}: {exc.detail}") from None


def load_config(path: str | Path) -> CompressConfig:
    """Read a YAML compression config (``yaml.safe_load``, nothing cleverer)."""
    import yaml

    p = Path(path)
    try:
        text = p.read_text()
    except FileNotFoundError:
        raise ConfigError(f"--config {p}: no such file") from None
    except OSError as exc:
        raise ConfigError(f"--config {p}: cannot read: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{p}: not valid YAML{where}: {getattr(exc, 'problem', exc)}") from None
    return config_from_dict(data, str(p))
