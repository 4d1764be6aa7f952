"""Compression configs: frozen dataclasses, each field validated on construction.

A config file holds the settings every method shares and one section per method::

    method: prune            # what `edgecut compress` runs (--method overrides it)
    seed: 0
    codec: int8+zstd         # feature codec for the crossing tensors (default: the plan's)
    data: auto               # auto | digits | mnist | synthetic | path/to/data.npz
    prune:
      ratio: 0.5
      train: {epochs: 10, lr: 0.002}
    mixed:
      steps: [{prune: {ratio: 0.5}}, {distill: {student: self}}, int8]

:mod:`partitioner.compress.loader` reads such a file into these classes. A bad
value raises a :class:`FieldError` naming the class and field, which the loader
turns into an error naming the file and section. Codec names are checked here
(:mod:`partitioner.codecs` sits below); method names are not, because the methods
are built on these classes: they are resolved where the method registry is known,
by the loader, the ``mixed`` method's :func:`~partitioner.compress.pipeline.check_steps`
and :func:`~partitioner.compress.registry.method_config`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from partitioner.codecs import CODECS
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


_DECOMPOSITIONS = ("standard", "separable", "group", "ghost")


def _numbers(obj: object, name: str, ok: Any, expected: str) -> None:
    """A non-empty list whose every item passes ``ok``; stored as a tuple without repeats."""
    values = getattr(obj, name)
    if not isinstance(values, (tuple, list)) or not values:
        raise FieldError(type(obj).__name__, name, f"a non-empty list of {expected}", values)
    for v in values:
        if isinstance(v, bool) or not ok(v):
            raise FieldError(type(obj).__name__, name, f"a list of {expected}", v)
    object.__setattr__(obj, name, tuple(dict.fromkeys(values)))


@dataclass(frozen=True)
class NasConfig:
    """The hardware-aware search of a student head (:mod:`partitioner.compress.nas`).

    The space (per stage): ``kernels`` x ``decompositions`` x ``squeezes`` (input-channel
    squeeze ratio, 1 = none) x ``widths`` (multiplier) x ``depths`` (blocks). The supernet
    is trained once (``supernet``), ``generations`` x ``population`` sub-networks are
    priced on ``device`` (default: the plan's edge device) and scored on
    ``quick_val_samples`` validation samples, then up to ``finalists`` points of the
    Pareto front within ``finalist_window`` points of its best are fine-tuned
    (``finetune``). The head kept is the fastest finalist whose validation accuracy is
    within ``accuracy_budget`` points of the uncompressed head's.
    """

    accuracy_budget: float = 1.0
    device: str | None = None
    kernels: tuple[int, ...] = (3, 5, 7)
    decompositions: tuple[str, ...] = _DECOMPOSITIONS
    squeezes: tuple[float, ...] = (1.0, 0.5, 0.25)
    widths: tuple[float, ...] = (0.25, 0.5, 0.75, 1.0)
    depths: tuple[int, ...] = (1, 2, 3)
    population: int = 16
    generations: int = 8
    mutation: float = 0.3  # probability that a child's gene is redrawn
    quick_val_samples: int = 400
    recalibration_samples: int = 256
    finalists: int = 4
    # points below the front's best: inherited weights rank sub-networks roughly, not finely
    finalist_window: float = 15.0
    supernet: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=30, lr=3e-3))
    finetune: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=20, lr=1e-3))

    def __post_init__(self) -> None:
        _float(self, "accuracy_budget", 0.0)
        if self.device is not None and (not isinstance(self.device, str) or not self.device):
            raise FieldError(
                "NasConfig", "device", "a device preset name such as rpi4", self.device
            )
        _numbers(
            self, "kernels", lambda k: isinstance(k, int) and k in (1, 3, 5, 7), "1, 3, 5 or 7"
        )
        _numbers(
            self,
            "decompositions",
            lambda d: d in _DECOMPOSITIONS,
            ", ".join(_DECOMPOSITIONS),
        )
        _numbers(
            self,
            "squeezes",
            lambda q: isinstance(q, (int, float)) and 0 < q <= 1,
            "ratios in (0, 1]",
        )
        _numbers(
            self,
            "widths",
            lambda w: isinstance(w, (int, float)) and 0 < w <= 2,
            "numbers in (0, 2]",
        )
        _numbers(self, "depths", lambda d: isinstance(d, int) and 1 <= d <= 6, "ints in [1, 6]")
        _int(self, "population", 2)
        _int(self, "generations", 0)
        _float(self, "mutation", 0.0, 1.0)
        _int(self, "quick_val_samples", 1)
        _int(self, "recalibration_samples", 1)
        _int(self, "finalists", 1)
        _float(self, "finalist_window", 0.0)
        for name in ("supernet", "finetune"):
            if not isinstance(getattr(self, name), TrainConfig):
                raise FieldError("NasConfig", name, "a train section", getattr(self, name))


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
    """Several methods in order, e.g. prune -> distill (into the pruned head) -> int8.

    Which names may follow which is the ``mixed`` method's rule, checked with the
    registry by :func:`~partitioner.compress.pipeline.check_steps`.
    """

    steps: tuple[Step, ...] = field(default_factory=_default_steps)

    def __post_init__(self) -> None:
        if not isinstance(self.steps, tuple) or not self.steps:
            raise FieldError("MixedConfig", "steps", "a non-empty list of methods", self.steps)
        for i, step in enumerate(self.steps):
            if not isinstance(step, Step):
                raise FieldError("MixedConfig", f"steps[{i}]", "a Step(method, config)", step)


@dataclass(frozen=True)
class CompressConfig:
    """Everything `edgecut compress` and `edgecut plan --compress` need besides the model."""

    method: str | None = None
    seed: int = 0
    codec: str | None = None  # feature codec for the crossing tensors; None: the plan's
    data: str = "auto"  # auto | digits | mnist | synthetic | path/to/data.npz
    train_samples: int | None = None  # cap on training/calibration samples
    eval_samples: int | None = None  # cap on validation and test samples
    timing_repeats: int = 20  # forward passes timed per head (median reported)
    sections: Mapping[str, Any] = field(default_factory=dict)  # method name -> its config

    def __post_init__(self) -> None:
        # ``method`` and the section names are resolved by the loader and by
        # method_config: the methods that define them are built on this module.
        _int(self, "seed", 0)
        if self.codec is not None:
            if not isinstance(self.codec, str):
                raise FieldError("CompressConfig", "codec", "a codec name", self.codec)
            _named(self, "codec", CODECS.get)
        if not isinstance(self.data, str) or not self.data:
            raise FieldError(
                "CompressConfig", "data", "auto, digits, mnist, synthetic or a .npz path", self.data
            )
        _int(self, "train_samples", 1, optional=True)
        _int(self, "eval_samples", 1, optional=True)
        _int(self, "timing_repeats", 1)
        if not isinstance(self.sections, Mapping):
            raise FieldError(
                "CompressConfig", "sections", "a mapping of method name -> config", self.sections
            )
