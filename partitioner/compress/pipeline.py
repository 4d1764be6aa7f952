"""``mixed``: several methods applied in order, as one config (prune -> distill -> int8).

Each step receives the head the previous step produced; the teacher stays the
original head throughout, so a distillation step after pruning recovers toward the
uncompressed model, not toward an already degraded one. ``int8`` can only be last.
"""

from __future__ import annotations

from partitioner.compress.config import FieldError, MixedConfig
from partitioner.compress.head import Context, Head
from partitioner.compress.registry import METHODS, Method
from partitioner.errors import EdgecutError


def check_steps(config: MixedConfig) -> None:
    """Every step a registered method other than ``mixed``, with its config, terminal last."""
    last = len(config.steps) - 1
    for i, step in enumerate(config.steps):
        where = f"steps[{i}]"
        if step.method == "mixed":
            raise FieldError("MixedConfig", where, "a method other than mixed", "mixed")
        try:
            method = METHODS.get(step.method)
        except EdgecutError as exc:
            raise FieldError("MixedConfig", where, "", None, detail=str(exc)) from None
        if method.terminal and i != last:
            raise FieldError(
                "MixedConfig",
                where,
                f"{step.method} last (its int8 graph cannot be compressed further)",
                step.method,
            )
        if not isinstance(step.config, method.config_type):
            raise FieldError("MixedConfig", where, method.config_type.__name__, step.config)


def _run(head: Head, ctx: Context, config: MixedConfig, *, trained: bool) -> Head:
    check_steps(config)
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
