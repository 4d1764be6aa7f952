"""Review of the testbed (runs as root): cleanup removes only names a testbed makes, and a
config refuses what tc cannot take. No root needed: ``ip`` is replaced by recorders."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from edgecut.testbed import link
from edgecut.testbed.link import TestbedError
from edgecut.testbed.run import TestbedConfig

DEAD_PID = 4_194_303  # pid_max's largest: not a running process here


def test_cleanup_spares_namespaces_and_interfaces_a_testbed_never_names(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``ectbox`` or ``ectb0`` (someone else's, prefix alike) hold no pid: cleanup, as root,
    would kill the processes inside and delete them. Only ``ectb-<pid>x<n>-edge|cloud|probe``
    and ``ectb<pid>x<n>e|c`` are a testbed's."""
    assert not link.alive(DEAD_PID)
    ours_ns = f"ectb-{DEAD_PID}x0-edge"
    ours_if = f"ectb{DEAD_PID}x0e"
    theirs_ns = ["ectbox", "ectb-lab", "ectb0", f"ectb{DEAD_PID}"]
    theirs_if = ["ectbr0", "ectb0", f"ectb-{DEAD_PID}x0"]
    monkeypatch.setattr(link, "leftovers", lambda: ([ours_ns, *theirs_ns], [ours_if, *theirs_if]))
    removed: list[str] = []
    monkeypatch.setattr(link, "remove_namespace", removed.append)
    monkeypatch.setattr(link, "run", lambda *args, check=True: removed.append(args[-1]))
    namespaces, links = link.cleanup()
    assert (namespaces, links) == ([ours_ns], [ours_if])
    assert removed == [ours_ns, ours_if]


@pytest.mark.parametrize(
    ("rate_mbit", "delay_ms"), [(5.0, math.nan), (math.inf, 0.0), (5.0, math.inf)]
)
def test_a_config_refuses_numbers_tc_cannot_take(rate_mbit: float, delay_ms: float) -> None:
    with pytest.raises(TestbedError, match="testbed: "):
        TestbedConfig(repository=Path("repo"), rate_mbit=rate_mbit, delay_ms=delay_ms)
