"""edgecut: split DNNs between edge devices and the cloud.

From Python, :mod:`edgecut.api` (re-exported here): ``edgecut.plan(...)``, ``split``,
``compress``, ``simulate``, ``sweep``, ``breakpoints``, and ``CloudNode``/``EdgeNode`` to
run nodes in-process; each returns a typed result whose ``to_json()`` is what the matching
command prints with ``--json`` (``docs/api.md``). From the shell, the ``edgecut`` command
(:mod:`edgecut.cli`): each subcommand lives in :mod:`edgecut.commands` as a module with
``register`` (add its parser) and ``run`` (a thin layer over the API that prints).

Nothing heavy is imported by ``import edgecut``: the API module loads on first use of one
of its names, and torch, numba or Ray only when a function needs them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = [
    "BreakpointsResult",
    "CloudNode",
    "CompressResult",
    "EdgeNode",
    "EdgeRunResult",
    "PlanResult",
    "RepositoryResult",
    "SimulationResult",
    "SplitResult",
    "SweepResult",
    "__version__",
    "breakpoints",
    "compress",
    "keep_freed_memory",
    "load_plan",
    "plan",
    "plan_json",
    "planner",
    "repository",
    "simulate",
    "split",
    "sweep",
]
_API = frozenset(__all__) - {"__version__"}

if TYPE_CHECKING:
    from edgecut.api import (
        BreakpointsResult,
        CloudNode,
        CompressResult,
        EdgeNode,
        EdgeRunResult,
        PlanResult,
        RepositoryResult,
        SimulationResult,
        SplitResult,
        SweepResult,
        breakpoints,
        compress,
        keep_freed_memory,
        load_plan,
        plan,
        plan_json,
        planner,
        repository,
        simulate,
        split,
        sweep,
    )


def __getattr__(name: str) -> Any:
    # The API on first use (PEP 562), so `import edgecut` and `edgecut --help` stay instant.
    if name in _API:
        from edgecut import api

        return getattr(api, name)
    raise AttributeError(f"module 'edgecut' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
