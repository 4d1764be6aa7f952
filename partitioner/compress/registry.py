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

from partitioner.errors import unknown_name


@dataclass(frozen=True)
class Method:
    name: str
    config_type: type
    apply: Callable[[Any, Any, Any], Any]  # (Head, Context, config) -> Head
    structure: Callable[[Any, Any, Any], Any]  # the same surgery, untrained
    description: str
    terminal: bool = False  # its head cannot be compressed further (an int8 graph)


_METHODS: dict[str, Method] = {}


def register_method(method: Method) -> Method:
    if method.name in _METHODS:
        raise ValueError(f"compression method {method.name!r} registered twice")
    _METHODS[method.name] = method
    return method


def get_method(name: str) -> Method:
    _load_builtins()
    try:
        return _METHODS[name]
    except (KeyError, TypeError):
        raise unknown_name("compression method", str(name), sorted(_METHODS)) from None


def list_methods() -> list[Method]:
    _load_builtins()
    return [_METHODS[k] for k in sorted(_METHODS)]


def _load_builtins() -> None:
    # The built-in methods register themselves on import; torchao and torch-pruning
    # are imported only when a method runs.
    from partitioner.compress import distill, lowrank, pipeline, prune, quantize  # noqa: F401
