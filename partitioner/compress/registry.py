"""The registry of compression methods (``int8``, ``prune``, ``lowrank``, ``distill``, ``nas``, ``mixed``).

A method is a function ``apply(head, context, config) -> head`` plus the frozen
dataclass its config is parsed into. ``structure`` does the surgery alone (no
training, no calibration), so that a search can price what a method would build
before paying to train it; ``artifacts``, if set, writes files beside the compressed
split from the method's notes (``nas`` draws its Pareto front). Register a new one with ``METHODS.register(Method(...))``
in a module that ``partitioner/compress/__init__.py`` imports; the CLI, the config
loader, the joint search and the tests reach it with ``METHODS.get(name)`` and
``METHODS.list()``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from partitioner.compress.config import CompressConfig, FieldError
from partitioner.registry import Registry


@dataclass(frozen=True)
class Method:
    name: str
    config_type: type  # a frozen dataclass whose defaults are the method's defaults
    apply: Callable[[Any, Any, Any], Any]  # (Head, Context, config) -> Head
    structure: Callable[[Any, Any, Any], Any]  # the same surgery, untrained
    description: str
    terminal: bool = False  # its head cannot be compressed further (an int8 graph)
    # (the method's notes, the output directory) -> files written there
    artifacts: Callable[[dict[str, Any], Path], list[Path]] | None = None


# Filled when ``partitioner.compress`` imports the modules of the built-in methods;
# torchao is imported only when a method runs.
METHODS: Registry[Method] = Registry("compression method")


def method_config(config: CompressConfig, name: str) -> Any:
    """The config method ``name`` runs with: its section of ``config``, else its defaults."""
    method = METHODS.get(name)
    section = config.sections.get(name)
    if section is None:
        return method.config_type()
    if not isinstance(section, method.config_type):
        raise FieldError("CompressConfig", name, method.config_type.__name__, section)
    return section
