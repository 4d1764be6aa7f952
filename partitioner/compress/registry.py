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


# The built-in methods register themselves when ``partitioner.compress`` imports them;
# torchao and torch-pruning are imported only when a method runs.
METHODS: Registry[Method] = Registry("compression method")
