"""The registry of compression methods (``int8``, ``prune``, ``lowrank``, ``distill``, ``mixed``).

A method is a function ``apply(head, context, config) -> head`` plus the frozen
dataclass its config is parsed into. ``structure`` does the surgery alone (no
training, no calibration), so that a search can price what a method would build
before paying to train it. Register a new one with :func:`register_method`; the
CLI, the config loader, the joint search and the tests pick it up from here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from partitioner.registry import Registry


@dataclass(frozen=True)
class Method:
    name: str
    config_type: type
    apply: Callable[[Any, Any, Any], Any]  # (Head, Context, config) -> Head
    structure: Callable[[Any, Any, Any], Any]  # the same surgery, untrained
    description: str
    terminal: bool = False  # its head cannot be compressed further (an int8 graph)


def _load_builtins() -> None:
    # The built-in methods register themselves on import; torchao and torch-pruning
    # are imported only when a method runs.
    from partitioner.compress import distill, lowrank, pipeline, prune, quantize  # noqa: F401


_METHODS: Registry[Method] = Registry("compression method", load=_load_builtins)


def register_method(method: Method) -> Method:
    return _METHODS.add(method.name, method)


def get_method(name: str) -> Method:
    return _METHODS.lookup(name)


def list_methods() -> list[Method]:
    return _METHODS.sorted_items()
