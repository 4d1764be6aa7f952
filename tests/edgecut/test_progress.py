"""Progress off a terminal (CI logs, pipes): log lines on stderr, one per step, the total
known up front; a long task between steps at most one line per interval."""

from __future__ import annotations

import re
from contextlib import nullcontext

import pytest

from edgecut.output import Progress, progress_bar


def lines(err: str) -> list[str]:
    return [re.sub(r" \(\d+ s\)$", "", line) for line in err.splitlines()]


def test_a_line_per_step_and_at_the_end(capsys: pytest.CaptureFixture[str]) -> None:
    with Progress(prefix="edgecut demo", interval_s=3600) as progress:
        assert not progress.terminal  # pytest's stderr is not a terminal
        progress("steps", 0, 3, "plan")
        progress("steps", 1, 3, "build")
        for done in range(0, 51):
            progress("frames", done, 50)  # per frame: only the first and the last
        progress("steps", 3, 3, "done")
    assert lines(capsys.readouterr().err) == [
        "edgecut demo: steps 0/3: plan",
        "edgecut demo: steps 1/3: build",
        "edgecut demo: frames 0/50",
        "edgecut demo: frames 50/50",
        "edgecut demo: steps 3/3: done",
    ]


def test_between_steps_a_line_per_interval(capsys: pytest.CaptureFixture[str]) -> None:
    with Progress(unit="windows", interval_s=0) as progress:
        for done in (0, 1, 1, 2):
            progress("adaptive", done, 2)
    assert lines(capsys.readouterr().err) == [
        "edgecut: adaptive 0/2 windows",
        "edgecut: adaptive 1/2 windows",  # a repeated count is not a new line
        "edgecut: adaptive 2/2 windows",
    ]


def test_disabled_progress_prints_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    with Progress(enabled=False) as progress:
        progress("steps", 0, 1, "x")
    context, update = progress_bar(False, "sweep", "cells", 4)
    assert isinstance(context, nullcontext) and update is None
    context, update = progress_bar(True, "sweep", "cells", None)
    assert update is not None
    with context:
        update(0, 4)
        update(4, 4)
    assert lines(capsys.readouterr().err) == [
        "edgecut: sweep 0/4 cells",
        "edgecut: sweep 4/4 cells",
    ]
