"""The model registry: a name -> factory table that the CLI and the tests share.

A family module decorates a zero-argument factory with :func:`register_model`;
:func:`create_model` builds it with seeded weights in ``eval()`` mode, and tests
parametrize over :func:`list_models` so every new entry is checked for free.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from partitioner.errors import ModelSpecError
from partitioner.registry import Registry

ModelFactory = Callable[[], nn.Module]

# Every factory runs under this seed, so two builds of one name give identical weights.
WEIGHT_SEED = 0


@dataclass(frozen=True)
class ModelEntry:
    """One registered model: how to build it and what it expects to be fed."""

    name: str
    factory: ModelFactory
    input_shape: tuple[int, ...]  # (B, C, H, W) the model was designed for
    test_input_shape: tuple[int, ...]  # smallest shape tests run it at
    num_classes: int
    description: str

    def __post_init__(self) -> None:
        for field_name in ("input_shape", "test_input_shape"):
            shape = getattr(self, field_name)
            if not shape or not all(isinstance(d, int) and d > 0 for d in shape):
                raise ValueError(
                    f"model {self.name!r}: {field_name} must be positive ints, got {shape!r}"
                )
        if self.num_classes < 1:
            raise ValueError(f"model {self.name!r}: num_classes must be >= 1")


MODELS: Registry[ModelEntry] = Registry("zoo model", error=ModelSpecError)


def register_model(
    name: str,
    *,
    input_shape: tuple[int, ...],
    test_input_shape: tuple[int, ...],
    num_classes: int,
    description: str,
) -> Callable[[ModelFactory], ModelFactory]:
    """Decorator that adds a zero-argument factory to the zoo under ``name``."""

    def decorator(factory: ModelFactory) -> ModelFactory:
        MODELS.register(
            ModelEntry(
                name=name,
                factory=factory,
                input_shape=tuple(input_shape),
                test_input_shape=tuple(test_input_shape),
                num_classes=num_classes,
                description=description,
            ),
        )
        return factory

    return decorator


def create_model(name: str) -> nn.Module:
    """Build ``name`` with deterministic weights, in ``eval()`` mode.

    The factory runs inside a forked RNG seeded with :data:`WEIGHT_SEED`, so the
    caller's global RNG state is untouched and every call gives the same weights.
    """
    entry = MODELS.get(name)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(WEIGHT_SEED)
        model = entry.factory()
    if not isinstance(model, nn.Module):
        raise TypeError(f"zoo factory {name!r} returned {type(model).__name__}, not nn.Module")
    return model.eval()
