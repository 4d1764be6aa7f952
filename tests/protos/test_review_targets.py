"""Review of ``--cloud a,b,c`` parsing (protos.transport.parse_targets): a malformed list
is one line that names what arrived and what is wrong with it."""

from __future__ import annotations

import pytest

from protos import transport


@pytest.mark.parametrize(
    "targets",
    ["[::1]:8001,[0::1]:8001", "[::ffff:10.0.0.1]:8001,[::ffff:a00:1]:8001"],
)
def test_one_replica_spelled_twice_is_refused(targets: str) -> None:
    with pytest.raises(ValueError, match="twice"):
        transport.parse_targets(targets)


@pytest.mark.parametrize("targets", ["10.0.0.1:8001,", "10.0.0.1:8001,,10.0.0.2:8001"])
def test_an_empty_entry_is_named_with_its_list(targets: str) -> None:
    with pytest.raises(ValueError) as info:
        transport.parse_targets(targets)
    assert repr(targets) in str(info.value) and "\n" not in str(info.value)


def test_a_separator_typo_is_not_reported_as_ipv6() -> None:
    with pytest.raises(ValueError) as info:
        transport.parse_targets("10.0.0.1:8001;10.0.0.2:8001")
    assert "IPv6" not in str(info.value)


@pytest.mark.parametrize(
    "targets",
    ["", ",", "10.0.0.1:1, 10.0.0.2:1", "a:1,b:1", "10.0.0.1:1,[::1]:2", "10.0.0.1:1\n",
     "dns:///a:1", "[]:1", "10.0.0.1:1,10.0.0.1:1"],
)  # fmt: skip
def test_malformed_lists_are_one_line(targets: str) -> None:
    with pytest.raises(ValueError) as info:
        transport.parse_targets(targets)
    assert str(info.value) and "\n" not in str(info.value)
