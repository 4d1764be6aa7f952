"""``prune``: structured pruning that removes channels, then a short recovery by distillation.

torch-pruning's dependency graph finds the channels that must go together (a
conv's outputs, the batch norm after it, the inputs of every consumer, all the
convolutions whose outputs meet in a residual add, the slices of a concatenation)
and physically slices the weight tensors, so the pruned head is smaller and faster,
not just masked. The layers whose channels cross the cut are protected
(:func:`~partitioner.compress.modules.protected_layers`): the crossing tensors keep
their shape and the tail is untouched.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
import torch_pruning as tp
from torch import nn

from partitioner.compress.config import PruneConfig
from partitioner.compress.head import Context, Head, as_tuple
from partitioner.compress.modules import CHANNEL_LAYERS, layers_of, protected_layers
from partitioner.compress.registry import METHODS, Method
from partitioner.compress.training import train_student
from partitioner.errors import EdgecutError


def _importance(name: str) -> Any:
    if name == "l1":
        return tp.importance.GroupMagnitudeImportance(p=1)
    if name == "fpgm":
        return tp.importance.FPGMImportance()
    if name == "lamp":
        return tp.importance.LAMPImportance()
    return tp.importance.GroupMagnitudeImportance(p=2)


def channel_count(module: nn.Module) -> int:
    """Output channels (features) of every conv and linear layer: the head's width."""
    total = 0
    for layer in layers_of(module, CHANNEL_LAYERS):
        weight: torch.Tensor = layer.weight  # type: ignore[assignment]
        total += int(weight.shape[0])
    return total


def prune_channels(
    module: nn.Module,
    example: torch.Tensor,
    ratio: float,
    *,
    importance: str = "l2",
    round_to: int | None = None,
) -> dict[str, Any]:
    """Remove ``ratio`` of the channels of every unprotected group of ``module``, in place."""
    protected = protected_layers(module)  # type: ignore[arg-type]
    with torch.no_grad():
        shapes = [t.shape for t in as_tuple(module(example))]
    before = channel_count(module)
    with torch.enable_grad():
        pruner = tp.pruner.BasePruner(
            module,
            example,
            importance=_importance(importance),
            pruning_ratio=ratio,
            ignored_layers=protected,
            round_to=round_to,
        )
        groups = sum(1 for _ in pruner.DG.get_all_groups(ignored_layers=pruner.ignored_layers))
        if groups == 0:
            raise EdgecutError(
                "nothing to prune: every conv/linear layer of the head produces channels that "
                "cross the cut; cut later, or use distill/lowrank"
            )
        pruner.step()
    with torch.no_grad():
        after_shapes = [t.shape for t in as_tuple(module(example))]
    if after_shapes != shapes:  # the protection is what keeps the tail valid: check it
        raise EdgecutError(
            f"pruning changed the crossing tensors from {shapes} to {after_shapes}; "
            "this head has a coupling edgecut does not recognise"
        )
    after = channel_count(module)
    return {
        "ratio": ratio,
        "importance": importance,
        "groups_pruned": groups,
        "protected_layers": len(protected),
        "channels_before": before,
        "channels_after": after,
    }


def prune(head: Head, ctx: Context, config: PruneConfig) -> Head:
    pruned = _structure(head, ctx, config)
    train_student(pruned.module, ctx, config.train, task="prune: fine-tune")
    return pruned


def _structure(head: Head, ctx: Context, config: PruneConfig) -> Head:
    if not head.trainable:
        raise EdgecutError("prune needs a float head: put int8 last in a pipeline")
    module = copy.deepcopy(head.module)
    note = prune_channels(
        module, ctx.example, config.ratio, importance=config.importance, round_to=config.round_to
    )
    return head.replaced(module, notes={"prune": note})


METHODS.register(
    Method(
        "prune",
        PruneConfig,
        prune,
        _structure,
        "structured channel pruning (torch-pruning dependency graph), then distillation",
    )
)
