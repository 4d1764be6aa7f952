"""``nas``: a hardware-aware architecture search for the edge head, under the cut's shape.

The tail fixes what the head must produce: one (B, C, H, W) tensor. A student head is
a chain of stages, each halving the resolution until H x W, and each stage is chosen
along the four levers of the lightweight-network literature:

* kernel size (3, 5, 7);
* input-channel squeeze (SqueezeNet): a 1x1 conv to a fraction of the channels first;
* decomposition of the convolution: standard, depthwise-separable (MobileNet), group
  convolution + channel shuffle (ShuffleNet), ghost module (GhostNet);
* width multiplier and depth (blocks per stage) (EfficientNet, Once-for-All).

The search follows Once-for-All / single-path one-shot NAS. A weight-sharing supernet
holds every choice at its largest size (a smaller kernel is the centre of the 7x7
weight, a narrower layer the first channels); it is trained once by distillation
(:func:`~partitioner.compress.training.train_student`: hint at the cut, soft targets
and labels through the frozen tail), a random sub-network each step. An evolutionary
Pareto search then proposes sub-networks; each is priced by the project's cost model
on the edge device (captured with BatchNorm folded, as it is deployed) and scored by
its validation accuracy with inherited weights (batch-norm statistics recalibrated).
The finalists on the Pareto front are fine-tuned and measured on the validation and
test splits; the chosen head is the fastest whose validation accuracy is within
``accuracy_budget`` points of the uncompressed head.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from partitioner.compress import measure
from partitioner.compress.config import NasConfig
from partitioner.compress.head import Context, Head
from partitioner.compress.registry import METHODS, Method
from partitioner.compress.training import one_thread, train_student
from partitioner.errors import EdgecutError
from partitioner.model.capture import capture
from partitioner.pricing.profiles import DEVICES, DeviceProfile

DECOMPOSITIONS = ("standard", "separable", "group", "ghost")
MAX_GROUPS = 4  # group convolution: 4 groups where the channels allow it, else 2, else 1
CHANNEL_STEP = 4  # widths are multiples of 4 (even for ghost halves, divisible by the groups)
SQUEEZE_MIN_CHANNELS = 8  # narrower inputs are not squeezed: there is nothing to save
DEFAULT_DEVICE = "rpi4"


# -- the search space -------------------------------------------------------------------


@dataclass(frozen=True)
class StageChoice:
    """What one stage of a student head is: the four levers (and depth)."""

    kernel: int
    decomposition: str
    squeeze: float  # 1.0: no squeeze layer
    width: float  # multiplier of the stage's base width
    depth: int  # blocks in the stage

    def label(self) -> str:
        sq = "" if self.squeeze >= 1 else f" sq{self.squeeze:g}"
        return f"{self.decomposition} k{self.kernel}{sq} w{self.width:g} d{self.depth}"


@dataclass(frozen=True)
class Arch:
    stages: tuple[StageChoice, ...]

    def label(self) -> str:
        return " | ".join(s.label() for s in self.stages)

    def to_json(self) -> list[dict[str, Any]]:
        return [asdict(s) for s in self.stages]


@dataclass(frozen=True)
class Space:
    """The student heads that fit one cut: input channels in, the crossing tensor out."""

    in_channels: int
    out_channels: int
    out_hw: tuple[int, int]
    out_relu: bool  # the crossing tensor is non-negative (it follows a ReLU): end with one
    strides: tuple[int, ...]  # first block of each stage
    base_widths: tuple[int, ...]  # widths at multiplier 1.0; the last is the cut's channels
    kernels: tuple[int, ...]
    squeezes: tuple[float, ...]
    decompositions: tuple[str, ...]
    widths: tuple[float, ...]
    depths: tuple[int, ...]

    def width(self, stage: int, multiplier: float) -> int:
        return channels(self.base_widths[stage] * multiplier)

    def choices(self) -> tuple[tuple[Any, ...], ...]:
        """The values of each gene of a stage, in :class:`StageChoice` field order."""
        return (self.kernels, self.decompositions, self.squeezes, self.widths, self.depths)

    def random(self, rng: np.random.Generator) -> Arch:
        return Arch(
            tuple(
                StageChoice(*(genes[rng.integers(len(genes))] for genes in self.choices()))
                for _ in self.strides
            )
        )

    def extreme(self, largest: bool) -> Arch:
        pick = max if largest else min
        stage = StageChoice(
            pick(self.kernels),
            "standard",  # the fewest ops per block: the fastest (and the densest)
            1.0 if largest or 1.0 in self.squeezes else min(self.squeezes),
            pick(self.widths),
            pick(self.depths),
        )
        if "standard" not in self.decompositions:
            stage = replace(stage, decomposition=self.decompositions[0])
        return Arch(tuple(stage for _ in self.strides))

    def size(self) -> int:
        return math.prod(len(g) for g in self.choices()) ** len(self.strides)


def channels(value: float) -> int:
    return max(CHANNEL_STEP, round(value / CHANNEL_STEP) * CHANNEL_STEP)


def space_for(ctx: Context, config: NasConfig) -> Space:
    """The space of student heads whose output has the shape of the cut's crossing tensor."""
    example = ctx.example
    if example.dim() != 4:
        raise EdgecutError(
            f"nas: searches convolutional heads of (B, C, H, W) images; the model takes "
            f"{list(example.shape)}"
        )
    cut, _ = ctx.teacher_outputs("train")
    if len(cut) != 1 or cut[0].dim() != 4:
        raise EdgecutError(
            "nas: expected one (B, C, H, W) tensor crossing the cut, got "
            f"{[list(t.shape[1:]) for t in cut]}; cut after a convolutional block"
        )
    out = cut[0]
    c_out, h_out, w_out = (int(d) for d in out.shape[1:])
    h_in, w_in = int(example.shape[2]), int(example.shape[3])
    if h_out > h_in or w_out > w_in:
        raise EdgecutError(
            f"nas: the crossing tensor ({h_out}x{w_out}) is larger than the input "
            f"({h_in}x{w_in}); nas only downsamples"
        )
    # one stride-2 stage per halving; at least one stage even when nothing is halved
    halvings = math.floor(math.log2(min(h_in / h_out, w_in / w_out)))
    stages = max(1, halvings)
    strides = tuple(2 if halvings > 0 else 1 for _ in range(stages))
    # widths double stage by stage up to the cut's channels (as in most CNNs)
    base = (*(channels(c_out / 2 ** (stages - 1 - i)) for i in range(stages - 1)), c_out)
    return Space(
        in_channels=int(example.shape[1]),
        out_channels=c_out,
        out_hw=(h_out, w_out),
        out_relu=bool(out.min() >= 0),
        strides=strides,
        base_widths=base,
        kernels=config.kernels,
        squeezes=config.squeezes,
        decompositions=config.decompositions,
        widths=config.widths,
        depths=config.depths,
    )


# -- layers shared by the supernet and the students --------------------------------------


class ConvBN(nn.Module):
    """A conv (and batch norm) that runs at any size up to its own: the weight-sharing unit.

    A smaller kernel is the centre of the weight, fewer output channels the first ones,
    fewer input channels the first ones of each group's slice. A student's layers are
    exactly its size and call their ``nn.Conv2d`` and ``nn.BatchNorm2d`` as they are, so
    that the exported head is the plain graph the int8 quantizer and the pricing know.
    """

    def __init__(
        self,
        cout: int,
        cin_per_group: int,
        kernel: int,
        *,
        bn: bool = True,
        stride: int = 1,
        groups: int = 1,
        bias: bool = False,
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(
            cin_per_group * groups, cout, kernel, stride, kernel // 2, groups=groups, bias=bias
        )
        nn.init.kaiming_normal_(self.conv.weight, mode="fan_out", nonlinearity="relu")
        self.bn = nn.BatchNorm2d(cout) if bn else None
        self.record: Callable[[ConvBN, int, int, int, int, int], None] | None = None

    def run(
        self, x: torch.Tensor, cout: int, kernel: int, stride: int, groups: int
    ) -> torch.Tensor:
        cin_per_group = x.shape[1] // groups
        if self.record is not None:
            self.record(self, cout, cin_per_group, kernel, stride, groups)
        conv = self.conv
        w: torch.Tensor = conv.weight
        exact = tuple(w.shape) == (cout, cin_per_group, kernel, kernel)
        if exact and conv.stride == (stride, stride) and conv.groups == groups:
            y = conv(x)
        else:
            w = w[:cout, :cin_per_group]
            off = (w.shape[-1] - kernel) // 2
            w = w[:, :, off : off + kernel, off : off + kernel]
            b = None if conv.bias is None else conv.bias[:cout]
            y = F.conv2d(x, w, b, stride, kernel // 2, 1, groups)
        bn = self.bn
        if bn is None:
            return y
        if bn.num_features == cout:
            return bn(y)
        assert bn.running_mean is not None and bn.running_var is not None
        return F.batch_norm(
            y,
            bn.running_mean[:cout],
            bn.running_var[:cout],
            bn.weight[:cout],
            bn.bias[:cout],
            self.training,
            bn.momentum if bn.momentum is not None else 0.1,
            bn.eps,
        )

    def sliced(
        self, cout: int, cin_per_group: int, kernel: int, stride: int, groups: int
    ) -> ConvBN:
        """A layer of exactly this size holding the shared weights (inherited, copied)."""
        bias = self.conv.bias is not None
        twin = ConvBN(
            cout,
            cin_per_group,
            kernel,
            bn=self.bn is not None,
            stride=stride,
            groups=groups,
            bias=bias,
        )
        off = (self.conv.weight.shape[-1] - kernel) // 2
        with torch.no_grad():
            twin.conv.weight.copy_(
                self.conv.weight[:cout, :cin_per_group, off : off + kernel, off : off + kernel]
            )
            if self.conv.bias is not None and twin.conv.bias is not None:
                twin.conv.bias.copy_(self.conv.bias[:cout])
            if self.bn is not None and twin.bn is not None:
                for name in ("weight", "bias", "running_mean", "running_var"):
                    getattr(twin.bn, name).copy_(getattr(self.bn, name)[:cout])
        return twin

    def fused(self) -> ConvBN:
        """The same function with batch norm folded into the conv: one op where there were two."""
        conv = self.conv
        cout, cin_per_group, kernel = conv.weight.shape[:3]
        twin = ConvBN(
            cout,
            cin_per_group,
            kernel,
            bn=False,
            stride=conv.stride[0],
            groups=conv.groups,
            bias=True,
        )
        assert twin.conv.bias is not None
        with torch.no_grad():
            bias = conv.bias if conv.bias is not None else torch.zeros(cout)
            if self.bn is None:
                twin.conv.weight.copy_(conv.weight)
                twin.conv.bias.copy_(bias)
                return twin
            bn = self.bn
            assert bn.running_mean is not None and bn.running_var is not None
            scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
            twin.conv.weight.copy_(conv.weight * scale[:, None, None, None])
            twin.conv.bias.copy_((bias - bn.running_mean) * scale + bn.bias)
        return twin


def _conv_bn(module: nn.Module) -> ConvBN:
    assert isinstance(module, ConvBN)
    return module


def _shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """ShuffleNet's channel shuffle: (B, g*n, H, W) -> (B, n*g, H, W)."""
    return x.unflatten(1, (groups, x.shape[1] // groups)).transpose(1, 2).flatten(1, 2)


def _groups(cin: int, cout: int) -> int:
    g = MAX_GROUPS
    while g > 1 and (cin % g or cout % g):
        g //= 2
    return g


def _block(
    x: torch.Tensor,
    key: str,
    choice: StageChoice,
    cout: int,
    stride: int,
    layer: Callable[[str], ConvBN],
    relu: bool,
) -> torch.Tensor:
    act: Callable[[torch.Tensor], torch.Tensor] = F.relu if relu else (lambda t: t)
    cin = x.shape[1]
    if choice.squeeze < 1 and cin >= SQUEEZE_MIN_CHANNELS:
        x = F.relu(layer(f"{key}_squeeze").run(x, channels(cin * choice.squeeze), 1, 1, 1))
        cin = x.shape[1]
    k, d = choice.kernel, choice.decomposition
    if d == "standard":
        return act(layer(f"{key}_conv").run(x, cout, k, stride, 1))
    if d == "separable":
        y = F.relu(layer(f"{key}_dw").run(x, cin, k, stride, cin))
        return act(layer(f"{key}_pw").run(y, cout, 1, 1, 1))
    if d == "group":
        g = _groups(cin, cout)
        y = act(layer(f"{key}_gconv").run(x, cout, k, stride, g))
        return _shuffle(y, g) if g > 1 else y
    # ghost: half the channels from a real conv, the other half from a cheap depthwise 3x3
    half = cout // 2
    primary = act(layer(f"{key}_primary").run(x, half, k, stride, 1))
    cheap = act(layer(f"{key}_cheap").run(primary, cout - half, 3, 1, half))
    return torch.cat([primary, cheap], dim=1)


def run_arch(
    x: torch.Tensor, arch: Arch, space: Space, layer: Callable[[str], ConvBN]
) -> torch.Tensor:
    """The head ``arch`` on ``x`` (B, C_in, H_in, W_in) -> (B, C_cut, H_cut, W_cut)."""
    last_stage = len(arch.stages) - 1
    for i, choice in enumerate(arch.stages):
        width = space.width(i, choice.width)
        for j in range(choice.depth):
            last = i == last_stage and j == choice.depth - 1
            x = _block(
                x,
                f"s{i}b{j}",
                choice,
                space.out_channels if last else width,
                space.strides[i] if j == 0 else 1,
                layer,
                relu=space.out_relu or not last,
            )
    if tuple(x.shape[-2:]) != space.out_hw:
        x = F.adaptive_avg_pool2d(x, space.out_hw)
    return x


class Student(nn.Module):
    """One sub-network as a standalone head: exactly-sized layers, a tuple out like any head."""

    def __init__(self, space: Space, arch: Arch, layers: dict[str, ConvBN]) -> None:
        super().__init__()
        self.space = space
        self.arch = arch
        self.layers = nn.ModuleDict(layers)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return (run_arch(x, self.arch, self.space, self._layer),)

    def _layer(self, key: str) -> ConvBN:
        return _conv_bn(self.layers[key])

    def fused(self) -> Student:
        """Batch norm folded into every conv: what is deployed, priced and exported."""
        fused = {k: _conv_bn(m).fused() for k, m in self.layers.items()}
        return Student(self.space, self.arch, fused).eval()


class Supernet(nn.Module):
    """Every sub-network of ``space`` in one set of weights; a random one per training step."""

    def __init__(self, space: Space, seed: int) -> None:
        super().__init__()
        self.space = space
        self.active = space.extreme(largest=True)
        self.sampler = np.random.default_rng(seed)
        self.layers = nn.ModuleDict()
        self._build()

    def _build(self) -> None:
        s = self.space
        k_max = max(s.kernels)
        cin = s.in_channels
        for i in range(len(s.strides)):
            width = max(s.width(i, w) for w in s.widths)
            if i == len(s.strides) - 1:
                width = max(width, s.out_channels)
            for j in range(max(s.depths)):
                key = f"s{i}b{j}"
                sq = max(channels(cin * q) for q in s.squeezes)
                self.layers[f"{key}_squeeze"] = ConvBN(sq, cin, 1)
                c = max(cin, sq)
                self.layers[f"{key}_conv"] = ConvBN(width, c, k_max)
                self.layers[f"{key}_dw"] = ConvBN(c, 1, k_max)
                self.layers[f"{key}_pw"] = ConvBN(width, c, 1)
                self.layers[f"{key}_gconv"] = ConvBN(width, c, k_max)
                self.layers[f"{key}_primary"] = ConvBN(width, c, k_max)
                self.layers[f"{key}_cheap"] = ConvBN(width, 1, 3)
                cin = width

    def _layer(self, key: str) -> ConvBN:
        return _conv_bn(self.layers[key])

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        arch = self.space.random(self.sampler) if self.training else self.active
        return (run_arch(x, arch, self.space, self._layer),)

    def extract(self, arch: Arch, example: torch.Tensor) -> Student:
        """``arch`` as a :class:`Student` holding copies of the shared weights it uses."""
        used: dict[str, ConvBN] = {}
        names = {id(m): k for k, m in self.layers.items()}

        def record(
            layer: ConvBN, cout: int, cin_per_group: int, kernel: int, stride: int, groups: int
        ) -> None:
            used[names[id(layer)]] = layer.sliced(cout, cin_per_group, kernel, stride, groups)

        layers = [_conv_bn(m) for m in self.layers.values()]
        for layer in layers:
            layer.record = record
        try:
            with torch.no_grad():
                run_arch(example[:1], arch, self.space, self._layer)
        finally:
            for layer in layers:
                layer.record = None
        return Student(self.space, arch, used).eval()


# -- pricing, scoring, and the Pareto front ----------------------------------------------


def edge_device(config: NasConfig, ctx: Context) -> DeviceProfile:
    """The device candidates are priced on: the config's, else the plan's edge, else rpi4."""
    device = (
        DEVICES.get(config.device) if config.device else ctx.edge or DEVICES.get(DEFAULT_DEVICE)
    )
    if device.measured_ms is not None:
        raise EdgecutError(
            f"nas prices candidate heads on a device preset; {device.name} answers only for "
            "the nodes it measured (set nas.device, e.g. rpi4)"
        )
    return device


def edge_ms(module: nn.Module, x1: torch.Tensor, device: DeviceProfile) -> float:
    """``module`` captured and priced by the cost model on ``device``, batch 1."""
    return device.graph_ms(capture(module, x1, name="head").graph)


def recalibrate(student: Student, x: torch.Tensor, batch: int = 128) -> None:
    """Batch-norm statistics of this sub-network, from scratch (the shared ones are a mix)."""
    norms = [m for m in student.modules() if isinstance(m, nn.BatchNorm2d)]
    for bn in norms:
        bn.reset_running_stats()
        bn.momentum = None  # a cumulative average over the batches below
    student.train()
    with torch.no_grad():
        for start in range(0, x.shape[0], batch):
            student(x[start : start + batch])
    for bn in norms:
        bn.momentum = 0.1
    student.eval()


@dataclass
class Candidate:
    arch: Arch
    edge_ms: float  # predicted on the edge device, batch-norm folded
    flops: int
    val_accuracy: float  # quick: inherited weights, recalibrated statistics
    finetuned: Student | None = None
    val_accuracy_tuned: float | None = None
    test_accuracy: float | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "arch": self.arch.label(),
            "stages": self.arch.to_json(),
            "predicted_edge_ms": round(self.edge_ms, 4),
            "flops": self.flops,
            "val_accuracy_inherited": round(self.val_accuracy, 2),
        }
        if self.val_accuracy_tuned is not None:
            out["val_accuracy"] = round(self.val_accuracy_tuned, 2)
        if self.test_accuracy is not None:
            out["test_accuracy"] = round(self.test_accuracy, 2)
        return out


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the non-dominated (cost, score) points: lower cost, higher score; by cost."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    front: list[int] = []
    best = -math.inf
    for i in order:
        if points[i][1] > best:
            front.append(i)
            best = points[i][1]
    return front


def _mutate(arch: Arch, space: Space, rate: float, rng: np.random.Generator) -> Arch:
    stages = []
    for stage in arch.stages:
        genes = list(asdict(stage).values())
        for g, values in enumerate(space.choices()):
            if rng.random() < rate:
                genes[g] = values[rng.integers(len(values))]
        stages.append(StageChoice(*genes))
    return Arch(tuple(stages))


def _crossover(a: Arch, b: Arch, rng: np.random.Generator) -> Arch:
    stages = []
    for sa, sb in zip(a.stages, b.stages, strict=True):
        ga, gb = list(asdict(sa).values()), list(asdict(sb).values())
        stages.append(
            StageChoice(*(x if rng.random() < 0.5 else y for x, y in zip(ga, gb, strict=True)))
        )
    return Arch(tuple(stages))


class Evaluator:
    """Prices and scores sub-networks of a trained supernet, each once."""

    def __init__(
        self, supernet: Supernet, ctx: Context, config: NasConfig, device: DeviceProfile
    ) -> None:
        self.supernet = supernet
        self.ctx = ctx
        self.device = device
        self.x1 = ctx.example[:1]
        data = ctx.data
        self.x_recal = data.x_train[: config.recalibration_samples]
        self.x_val = data.x_val[: config.quick_val_samples]
        self.y_val = data.y_val[: config.quick_val_samples]
        self.seen: dict[Arch, Candidate] = {}

    def __call__(self, arch: Arch) -> Candidate:
        if arch not in self.seen:
            student = self.supernet.extract(arch, self.x1)
            recalibrate(student, self.x_recal)
            fused = student.fused()
            graph = capture(fused, self.x1, name="head").graph
            self.seen[arch] = Candidate(
                arch,
                self.device.graph_ms(graph),
                graph.total_flops(),
                measure.accuracy(student, self.ctx.tail, self.x_val, self.y_val),
            )
        return self.seen[arch]


def evolve(
    space: Space,
    evaluate: Callable[[Arch], Candidate],
    config: NasConfig,
    rng: np.random.Generator,
    report: Callable[[int, int], None] | None = None,
) -> list[Candidate]:
    """An evolutionary Pareto search: children of the current front, by crossover and mutation."""
    population = [space.extreme(largest=True), space.extreme(largest=False)]
    population += [space.random(rng) for _ in range(config.population - len(population))]
    archive = [evaluate(a) for a in dict.fromkeys(population)]
    for gen in range(config.generations):
        if report:
            report(gen, config.generations)
        front = [archive[i] for i in pareto_front([(c.edge_ms, c.val_accuracy) for c in archive])]
        parents = front if len(front) >= 2 else sorted(archive, key=lambda c: -c.val_accuracy)[:4]
        children: list[Arch] = []
        tries = 0
        while len(children) < config.population and tries < 20 * config.population:
            tries += 1
            a, b = (parents[i].arch for i in rng.integers(len(parents), size=2))
            child = _mutate(_crossover(a, b, rng), space, config.mutation, rng)
            if child not in children and all(c.arch != child for c in archive):
                children.append(child)
        archive += [evaluate(a) for a in children]
    if report:
        report(config.generations, config.generations)
    return archive


def _finalists(front: list[Candidate], config: NasConfig) -> list[Candidate]:
    """Up to ``config.finalists`` points of the front, spread over latency, the weak ones left out."""
    best = max(c.val_accuracy for c in front)
    usable = [c for c in front if c.val_accuracy >= best - config.finalist_window]
    if len(usable) <= config.finalists:
        return usable
    picks = np.unique(np.round(np.linspace(0, len(usable) - 1, config.finalists)).astype(int))
    return [usable[i] for i in picks]


def choose(finalists: list[Candidate], reference: float, budget: float) -> tuple[Candidate, bool]:
    """The fastest finalist losing at most ``budget`` validation points against ``reference``.

    If none does, the most accurate one, and False: the caller reports the budget as missed.
    """
    within = [c for c in finalists if reference - (c.val_accuracy_tuned or 0.0) <= budget + 1e-9]
    if within:
        return min(within, key=lambda c: (c.edge_ms, -(c.val_accuracy_tuned or 0.0))), True
    return max(finalists, key=lambda c: (c.val_accuracy_tuned or 0.0, -c.edge_ms)), False


# -- the method --------------------------------------------------------------------------


def nas(head: Head, ctx: Context, config: NasConfig) -> Head:
    with one_thread():
        return _search(head, ctx, config)


def _search(head: Head, ctx: Context, config: NasConfig) -> Head:
    started = time.perf_counter()
    space = space_for(ctx, config)
    device = edge_device(config, ctx)
    rng = np.random.default_rng(ctx.seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(ctx.seed)
        supernet = Supernet(space, ctx.seed)
    train_student(supernet, ctx, config.supernet, task="nas: train supernet")
    trained_at = time.perf_counter()

    evaluate = Evaluator(supernet, ctx, config, device)
    archive = evolve(
        space, evaluate, config, rng, lambda done, total: ctx.report("nas: evolve", done, total)
    )
    front = [archive[i] for i in pareto_front([(c.edge_ms, c.val_accuracy) for c in archive])]
    searched_at = time.perf_counter()

    data = ctx.data
    teacher_val = measure.accuracy(ctx.teacher, ctx.tail, data.x_val, data.y_val)
    teacher_test = measure.accuracy(ctx.teacher, ctx.tail, data.x_test, data.y_test)
    finalists = _finalists(front, config)
    for i, cand in enumerate(finalists):
        student = supernet.extract(cand.arch, evaluate.x1)
        recalibrate(student, evaluate.x_recal)
        train_student(
            student, ctx, config.finetune, task=f"nas: fine-tune {i + 1}/{len(finalists)}"
        )
        cand.finetuned = student
        cand.val_accuracy_tuned = measure.accuracy(student, ctx.tail, data.x_val, data.y_val)
        cand.test_accuracy = measure.accuracy(student, ctx.tail, data.x_test, data.y_test)
    chosen, within = choose(finalists, teacher_val, config.accuracy_budget)
    assert chosen.finetuned is not None
    final_front = [
        finalists[i] for i in pareto_front([(c.edge_ms, c.test_accuracy or 0.0) for c in finalists])
    ]
    module = chosen.finetuned.fused()
    teacher_ms = edge_ms(ctx.teacher, evaluate.x1, device)
    note = {
        "device": device.name,
        "space_size": space.size(),
        "accuracy_budget": config.accuracy_budget,
        "within_budget": within,
        "chosen": chosen.to_json(),
        "teacher": {
            "predicted_edge_ms": round(teacher_ms, 4),
            "val_accuracy": round(teacher_val, 2),
            "test_accuracy": round(teacher_test, 2),
        },
        "pareto_front": [c.to_json() for c in final_front],  # finalists: test accuracy
        "finalists": [c.to_json() for c in finalists],
        "search_front": [c.to_json() for c in front],  # inherited weights: validation
        "evaluated": [
            [round(c.edge_ms, 4), round(c.val_accuracy, 2)] for c in archive
        ],  # (predicted ms, val accuracy with inherited weights) of every sub-network scored
        "seconds": {
            "supernet": round(trained_at - started, 1),
            "search": round(searched_at - trained_at, 1),
            "finetune": round(time.perf_counter() - searched_at, 1),
        },
    }
    return head.replaced(module, structure=module, trainable=True, notes={"nas": note})


def smallest_student(head: Head, ctx: Context, config: NasConfig) -> Head:
    """The fastest head of the space, untrained: the price ``nas`` can at best reach."""
    space = space_for(ctx, config)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(ctx.seed)
        supernet = Supernet(space, ctx.seed)
    module = supernet.extract(space.extreme(largest=False), ctx.example).fused()
    return head.replaced(module, structure=module, notes={"nas": {"structure": "fastest"}})


def plot_pareto(note: dict[str, Any], path: Path) -> Path:
    """The search on two panels: every sub-network scored, then the fine-tuned finalists."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5))
    evaluated = np.asarray(note["evaluated"], dtype=float).reshape(-1, 2)
    left.scatter(evaluated[:, 0], evaluated[:, 1], s=10, c="0.6", label="sub-networks scored")
    sf = note["search_front"]
    left.plot(
        [c["predicted_edge_ms"] for c in sf],
        [c["val_accuracy_inherited"] for c in sf],
        "o-",
        c="tab:blue",
        ms=4,
        label="Pareto front",
    )
    fin = note["finalists"]
    left.scatter(
        [c["predicted_edge_ms"] for c in fin],
        [c["val_accuracy_inherited"] for c in fin],
        s=60,
        facecolors="none",
        edgecolors="tab:green",
        label="finalists",
    )
    left.set_title("search: inherited weights (validation)")
    left.set_ylabel("accuracy (%)")

    te, ch, pf = note["teacher"], note["chosen"], note["pareto_front"]
    right.scatter(
        [c["predicted_edge_ms"] for c in fin],
        [c["test_accuracy"] for c in fin],
        s=40,
        c="tab:green",
        alpha=0.5,
        label="finalists, fine-tuned",
    )
    right.plot(
        [c["predicted_edge_ms"] for c in pf],
        [c["test_accuracy"] for c in pf],
        "s-",
        c="tab:green",
        label="their Pareto front",
    )
    right.scatter(
        [ch["predicted_edge_ms"]],
        [ch["test_accuracy"]],
        s=160,
        marker="*",
        c="tab:red",
        zorder=5,
        label=f"chosen (budget {note['accuracy_budget']:g} points)",
    )
    right.scatter(
        [te["predicted_edge_ms"]],
        [te["test_accuracy"]],
        s=60,
        marker="D",
        c="black",
        zorder=5,
        label="uncompressed head",
    )
    right.set_title("finalists: fine-tuned (test)")
    for ax in (left, right):
        ax.set_xlabel(f"predicted head latency on {note['device']} (ms)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")
    fig.suptitle("nas: predicted edge latency vs measured accuracy")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_artifacts(note: dict[str, Any], out: Path) -> list[Path]:
    if "pareto_front" not in note:
        return []
    return [plot_pareto(note, out / "nas_pareto.png")]


METHODS.register(
    Method(
        "nas",
        NasConfig,
        nas,
        smallest_student,
        "hardware-aware search of a student head (kernel, squeeze, decomposition, width, "
        "depth): weight-sharing supernet, evolutionary Pareto search priced by the cost model",
        artifacts=write_artifacts,
    )
)
