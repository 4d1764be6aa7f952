"""``mixed``: several methods applied in order, as one config (prune -> distill -> int8).

Each step receives the head the previous step produced; the teacher stays the
original head throughout, so a distillation step after pruning recovers toward the
uncompressed model, not toward an already degraded one. ``int8`` can only be last.
"""

from __future__ import annotations

from partitioner.compress.config import MixedConfig
from partitioner.compress.head import Context, Head
from partitioner.compress.registry import METHODS, Method


def _run(head: Head, ctx: Context, config: MixedConfig, *, trained: bool) -> Head:
    names = [step.method for step in config.steps]
    for i, step in enumerate(config.steps):
        method = METHODS.get(step.method)
        stage = ctx.step(f"[{i + 1}/{len(config.steps)}] ")
        head = (method.apply if trained else method.structure)(head, stage, step.config)
    head.notes["mixed"] = {"steps": names}
    return head


def mixed(head: Head, ctx: Context, config: MixedConfig) -> Head:
    return _run(head, ctx, config, trained=True)


def _structure(head: Head, ctx: Context, config: MixedConfig) -> Head:
    return _run(head, ctx, config, trained=False)


METHODS.register(
    Method(
        "mixed",
        MixedConfig,
        mixed,
        _structure,
        "a pipeline of the other methods, e.g. prune -> distill -> int8",
    )
)
