"""What a compression method works on: the head being compressed and its context.

A :class:`Head` is the current edge half (an ``nn.Module`` mapping the model's
inputs to the tensors that cross the cut) and what is known about it; methods
take one and return a new one, so a pipeline is a fold. The :class:`Context`
holds what stays fixed: the original head as teacher, the frozen tail, the data,
the seed, the edge device the plan targets, and a progress callback; it caches the teacher's outputs on the data.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.fx as fx
from torch import nn

from partitioner.compress.data import CompressionData
from partitioner.pricing.profiles import DeviceProfile

# (task label, steps done, steps in total)
Progress = Callable[[str, int, int], None]


@dataclass
class Head:
    module: nn.Module  # inputs -> tuple of crossing tensors
    structure: nn.Module  # float module whose ops describe the head's cost (int8 keeps it)
    runtime: str | None = None  # artifact runtime that loads ``module`` (pt2e-int8)
    trainable: bool = True
    notes: dict[str, Any] = field(default_factory=dict)  # what each method did, for the report

    def replaced(self, module: nn.Module, **changes: Any) -> Head:
        notes = {**self.notes, **changes.pop("notes", {})}
        structure = changes.pop("structure", module)
        return Head(module, structure, notes=notes, **changes)


def frozen(module: nn.Module) -> nn.Module:
    """A copy that gradients flow through but never into."""
    twin = copy.deepcopy(module).eval()
    for p in twin.parameters():
        p.requires_grad_(False)
    return twin


def as_tuple(value: object) -> tuple[torch.Tensor, ...]:
    if isinstance(value, torch.Tensor):
        return (value,)
    return tuple(value)  # type: ignore[arg-type]


class TupleOutput(nn.Module):
    """``module`` returning a tuple, as every head does (one tensor per crossing tensor)."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return as_tuple(self.module(x))


@dataclass
class Context:
    teacher: fx.GraphModule  # the uncompressed head, frozen
    tail: nn.Module | None  # the uncompressed tail, frozen; None for an edge-only plan
    data: CompressionData
    example: torch.Tensor  # a batch-2 input: export traces the batch as symbolic from it
    seed: int = 0
    progress: Progress | None = None
    edge: DeviceProfile | None = (
        None  # the plan's edge device (a hardware-aware method prices on it)
    )
    label: str = ""  # prefix of progress labels (the step of a pipeline)
    _cache: dict[str, tuple[tuple[torch.Tensor, ...], torch.Tensor | None]] = field(
        default_factory=dict, repr=False
    )

    def report(self, task: str, done: int, total: int) -> None:
        if self.progress is not None:
            self.progress(f"{self.label}{task}", done, total)

    def step(self, label: str) -> Context:
        """The same context, reporting progress under ``label``."""
        twin = copy.copy(self)
        twin.label = label
        return twin

    def logits(self, cut: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """The model's (first) output for the tensors at the cut: the tail, or the cut itself."""
        out = as_tuple(self.tail(*cut)) if self.tail is not None else cut
        return out[0]

    def teacher_outputs(self, split: str) -> tuple[tuple[torch.Tensor, ...], torch.Tensor]:
        """The teacher's cut tensors and logits on ``split`` (train/val/test), computed once."""
        if split not in self._cache:
            x = self.data.inputs(split)
            cuts: list[tuple[torch.Tensor, ...]] = []
            logits: list[torch.Tensor] = []
            with torch.no_grad():
                for start in range(0, x.shape[0], 256):
                    cut = as_tuple(self.teacher(x[start : start + 256]))
                    cuts.append(cut)
                    logits.append(self.logits(cut))
            merged = tuple(torch.cat(parts) for parts in zip(*cuts, strict=True))
            self._cache[split] = (merged, torch.cat(logits))
        cut, logit = self._cache[split]
        assert logit is not None
        return cut, logit
