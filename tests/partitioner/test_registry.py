"""The registry behind devices, codecs, solvers, zoo models, methods, runtimes, policies."""

from __future__ import annotations

import pytest

from partitioner.errors import EdgecutError, ModelSpecError
from partitioner.registry import Registry


def test_a_name_is_registered_once() -> None:
    things: Registry[int] = Registry("thing")
    assert things.add("a", 1) == 1
    with pytest.raises(ValueError, match="thing 'a' registered twice"):
        things.add("a", 2)
    assert things["a"] == 1


def test_an_unknown_name_lists_the_choices_in_the_kinds_error() -> None:
    things: Registry[int] = Registry("zoo model", error=ModelSpecError)
    things.add("resnet18", 1)
    things.add("alexnet", 2)
    with pytest.raises(
        ModelSpecError,
        match="unknown zoo model 'resnet19': expected one of alexnet, resnet18; "
        "did you mean 'resnet18'",
    ):
        things.lookup("resnet19")
    with pytest.raises(EdgecutError, match=r"unknown zoo model \S*\['a'\]\S*: expected one of"):
        things.lookup(["a"])  # type: ignore[arg-type]  # unhashable, as from a YAML file


def test_builtins_load_on_the_first_miss_or_listing_and_only_once() -> None:
    calls: list[str] = []

    def load() -> None:
        calls.append("load")
        things.add("late", 1)

    things: Registry[int] = Registry("thing", load=load)
    things.add("early", 0)
    assert things.lookup("early") == 0
    assert calls == []  # a hit never loads
    assert things.lookup("late") == 1
    assert things.sorted_names() == ["early", "late"]
    assert calls == ["load"]


def test_a_load_that_fails_is_tried_again() -> None:
    attempts: list[int] = []

    def load() -> None:
        attempts.append(1)
        if len(attempts) == 1:
            raise ImportError("optional dependency missing")

    things: Registry[int] = Registry("thing", load=load)
    with pytest.raises(ImportError):
        things.lookup("x")
    with pytest.raises(EdgecutError, match="unknown thing 'x'"):
        things.lookup("x")
    assert len(attempts) == 2
