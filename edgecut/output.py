"""Printing: JSON for machines (``--json``), rich tables for people."""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Callable
from contextlib import nullcontext
from typing import Any


def print_json(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2, default=_default)
    sys.stdout.write("\n")


def _default(value: Any) -> Any:
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def console() -> Any:
    from rich.console import Console

    # Piped output (CI logs, `| less`) gets rich's 80-column default, which folds tables.
    width = None if sys.stdout.isatty() else 160
    return Console(highlight=False, width=width)


def table(
    title: str, columns: list[str], rows: list[list[Any]], *, right: set[int] | None = None
) -> Any:
    from rich.table import Table

    t = Table(title=title, title_justify="left", header_style="bold")
    for i, name in enumerate(columns):
        t.add_column(name, justify="right" if right and i in right else "left")
    for row in rows:
        t.add_row(*(fmt(v) for v in row))
    return t


def fmt(value: Any) -> str:
    if isinstance(value, float):
        if math.isinf(value):
            return "inf"
        if value == 0:
            return "0"
        if abs(value) >= 100:
            return f"{value:,.0f}"
        if abs(value) >= 1:
            return f"{value:.2f}"
        return f"{value:.3g}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


class Progress:
    """Progress of named tasks, each with its total known up front, on stderr (stdout stays
    clean for ``--json``): a rich bar per task on a terminal, log lines otherwise.

    Use it as a context manager and call it as ``progress(task, done, total, note="")``
    (the signature of :data:`partitioner.compress.head.Progress`, plus a note on what is
    being done). Off a terminal a task logs one line when it starts, when its note changes
    (a new step), when it ends, and between those at most one line per ``interval_s``, so a
    CI log shows what a long command is doing without a line per training batch.
    """

    def __init__(
        self, enabled: bool = True, *, unit: str = "", prefix: str = "edgecut",
        interval_s: float = 3.0,
    ) -> None:  # fmt: skip
        self.enabled = enabled
        self.unit = unit
        self.prefix = prefix
        self.interval_s = interval_s
        self.terminal = sys.stderr.isatty()
        self._bar: Any = None
        self._rows: dict[str, Any] = {}
        self._logged: dict[str, tuple[float, int, str]] = {}  # task -> (when, done, note)
        self._started = time.monotonic()

    def __enter__(self) -> Progress:
        self._started = time.monotonic()
        if self.enabled and self.terminal:
            from rich.console import Console
            from rich.progress import BarColumn, TextColumn, TimeElapsedColumn
            from rich.progress import Progress as RichProgress

            self._bar = RichProgress(
                TextColumn("{task.description}"),
                BarColumn(),
                TextColumn(f"{{task.completed}}/{{task.total}} {self.unit}".rstrip()),
                TimeElapsedColumn(),
                console=Console(stderr=True),
                transient=True,
            )
            self._bar.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.__exit__(None, None, None)
            self._bar = None

    def __call__(self, task: str, done: int, total: int, note: str = "") -> None:
        if not self.enabled:
            return
        if self._bar is not None:
            label = f"{task}: {note}" if note else task
            if task not in self._rows:
                self._rows[task] = self._bar.add_task(label, total=total)
            self._bar.update(self._rows[task], completed=done, total=total, description=label)
            return
        now = time.monotonic()
        last = self._logged.get(task)
        due = (
            last is None
            or note != last[2]
            or (done >= total and last[1] < total)
            or (done != last[1] and now - last[0] >= self.interval_s)
        )
        if due:
            self._logged[task] = (now, done, note)
            unit = f" {self.unit}" if self.unit else ""
            what = f": {note}" if note else ""
            print(
                f"{self.prefix}: {task} {done}/{total}{unit}{what} ({now - self._started:.0f} s)",
                file=sys.stderr,
                flush=True,
            )


def progress_bar(
    enabled: bool, label: str, unit: str, total: int | None
) -> tuple[Any, Callable[[int, int], None] | None]:
    """One task's :class:`Progress` as ``(context, update(done, total))``, the total known up
    front (rich on a terminal, log lines otherwise); ``(nullcontext(), None)`` when disabled."""
    if not enabled:
        return nullcontext(), None
    progress = Progress(unit=unit)
    return progress, lambda done, total: progress(label, done, total)
